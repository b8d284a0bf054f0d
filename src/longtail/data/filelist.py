"""The long-tail field's file-list format: ``--data list:TRAIN.txt[,TEST.txt][,classes=NAMES.txt]``.

ImageNet-LT and Places-LT ship their splits as text files with one ``relative/path label`` per
line; the paths start at ``--root`` (default: the folder holding TRAIN.txt). The label is the
last field of the line, so paths may contain spaces. Labels are class indices 0..C-1: class j
is label j (not sorted class-name order, which would renumber "10" before "2").

Class names are the labels as text ("0", "1", ...) unless a classes file is given: one name per
line, line i naming label i, or ``NAME LABEL`` lines (Places365's categories_places365.txt);
every label from 0 to C-1 named once. Without a classes file C is the largest training label + 1.

This module parses and checks the text; sources.py reads the files and the images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from longtail.data.images import shown
from longtail.errors import LongtailError

PREFIX = "list:"
_LABEL = re.compile(r"^[0-9]+$")


@dataclass(frozen=True)
class ListSpec:
    train: str
    test: str | None
    classes: str | None


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the root
    label: int
    line: int  # 1-based, for messages


def is_list_spec(spec: str) -> bool:
    return spec.startswith(PREFIX)


def parse_spec(spec: str) -> ListSpec:
    """``list:TRAIN[,TEST][,classes=NAMES]`` -> its parts."""
    usage = "give --data list:TRAIN.txt[,TEST.txt][,classes=NAMES.txt]"
    parts = [p.strip() for p in spec[len(PREFIX):].split(",")]
    classes = [p[len("classes="):] for p in parts if p.startswith("classes=")]
    lists = [p for p in parts if not p.startswith("classes=")]
    if not lists or not lists[0] or len(lists) > 2 or len(classes) > 1 or (len(lists) == 2 and not lists[1]) \
            or (classes and not classes[0]):
        raise LongtailError(f"cannot read the file-list spec {shown(spec)} ({usage})")
    return ListSpec(lists[0], lists[1] if len(lists) == 2 else None, classes[0] if classes else None)


def parse_list(text: str, where: str) -> list[Entry]:
    """Every ``path label`` line of a list file; blank lines are skipped."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().rsplit(None, 1)
        if len(fields) != 2:
            raise LongtailError(f"{where} line {number}: expected 'relative/path label', got {shown(line.strip()[:80])!r}")
        path, label = fields
        if not _LABEL.match(label):
            raise LongtailError(f"{where} line {number}: the label {shown(label[:40])!r} is not a non-negative integer "
                                "(labels are class indices 0, 1, 2, ...)")
        if PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute() or PureWindowsPath(path).drive \
                or ".." in PurePosixPath(path.replace("\\", "/")).parts:
            raise LongtailError(f"{where} line {number}: {shown(path[:120])} is not a path inside --root "
                                "(absolute, or with '..')")
        entries.append(Entry(path, int(label), number))
    if not entries:
        raise LongtailError(f"{where} lists no images")
    return entries


def parse_classes(text: str, where: str) -> list[str]:
    """Class names by label from a classes file (see the module doc)."""
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    named: dict[int, str] = {}
    for position, (number, line) in enumerate(lines):
        fields = line.rsplit(None, 1)
        label, name = (int(fields[1]), fields[0]) if len(fields) == 2 and _LABEL.match(fields[1]) else (position, line)
        if label in named:
            raise LongtailError(f"{where} line {number}: label {label} is named twice")
        if not name.isprintable():
            raise LongtailError(f"{where} line {number}: the class name is not printable text")
        named[label] = name
    if not named:
        raise LongtailError(f"{where} names no classes")
    missing = [j for j in range(len(named)) if j not in named]
    if missing:
        raise LongtailError(f"{where} names no class for label {missing[0]} (labels must run from 0 to "
                            f"{len(named) - 1})")
    names = [named[j] for j in range(len(named))]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise LongtailError(f"{where} names two labels {shown(twice)!r}; class names must differ")
    return names


def check_labels(train: list[Entry], test: list[Entry] | None, classes: list[str] | None,
                 train_where: str, test_where: str) -> list[str]:
    """The class names; refuses a label outside them and a class without a training image."""
    count = len(classes) if classes is not None else max(e.label for e in train) + 1
    for entries, where in ((train, train_where), (test or [], test_where)):
        for e in entries:
            if e.label >= count:
                known = f"the {count} classes of the classes file" if classes is not None else \
                    f"the training list's labels 0 to {count - 1}"
                raise LongtailError(f"{where} line {e.line}: label {e.label} is not one of {known}")
    seen = {e.label for e in train}
    empty = [j for j in range(count) if j not in seen]
    if empty:
        raise LongtailError(f"{train_where} has no image of label {empty[0]} (every class needs training images; "
                            f"labels run from 0 to {count - 1})")
    if count < 2:
        raise LongtailError(f"{train_where} has only one class (label 0); at least 2 are needed")
    return classes if classes is not None else [str(j) for j in range(count)]

