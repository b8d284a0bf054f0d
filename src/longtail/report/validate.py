"""What a report accepts from a run store. longtail writes these files itself, but a report reads
whatever a folder holds (edited by hand, truncated, copied from elsewhere, hostile), so every
document is checked here before anything is drawn or counted from it.

:func:`read_json_file` raises :class:`Unusable` with the reason a file cannot be read; each
``*_problem`` function returns None for a usable document, else the first thing wrong, worded to
follow the file's name and a colon in a note ("…/summary.json: 'test_acc' is "0.7", not a number
from 0 to 1").
Nothing here raises on any JSON value: recursion is bounded by MAX_DEPTH, numbers by float range.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Nesting beyond this is junk; left unbounded, deep nesting makes repr, == and json.dumps recurse.
MAX_DEPTH = 32
# Curve values (losses, accuracies, seconds) beyond this are junk: their sums and squares would
# overflow a float, and an axis scaled to them would hide every real curve.
MAX_VALUE = 1e12
# Confusion and class counts are image counts; above 2**53 a float no longer holds them exactly.
MAX_COUNT = 2.0 ** 53
SHOWN = 40  # characters of a bad value quoted in a note
# Far beyond any run file longtail writes (a 1,000-class confusion matrix is a few MiB).
MAX_BYTES = 256 * 2**20


class Unusable(Exception):
    """A file of the run store that the report cannot use; the message says why, for a person."""


def shown(text: object) -> str:
    """``text`` for a one-line message: control characters (a newline in a folder name) escaped,
    and a name that is not valid UTF-8 shown with the replacement character."""
    s = str(text)
    try:  # a folder name's undecodable bytes come as surrogate escapes: back to bytes, then U+FFFD
        s = s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800"
        s = s.encode("utf-8", "replace").decode("utf-8")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def _quote(value: Any) -> str:
    try:
        text = json.dumps(value, allow_nan=True)
    except (ValueError, TypeError, RecursionError):
        text = type(value).__name__
    return shown(text if len(text) <= SHOWN else text[:SHOWN - 1] + "\u2026")


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


def read_bytes(path: Path) -> bytes:
    """The bytes of a regular file (a link to one is followed) of at most MAX_BYTES; Unusable for
    anything else: reading /dev/zero would never end, opening a named pipe would wait forever."""
    path = Path(path)
    if path.is_dir():
        raise Unusable("a folder, not a file")
    if not path.is_file():
        raise Unusable("not a regular file" if path.exists() else "a link to nothing")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise Unusable(f"cannot be read ({shown(e.strerror or e)})") from None
    if len(raw) > MAX_BYTES:
        raise Unusable(f"larger than {MAX_BYTES >> 20} MiB")
    return raw


def read_json_file(path: Path) -> Any:
    """The JSON value in ``path``; raises Unusable when it cannot be read, is not JSON or nests
    deeper than MAX_DEPTH."""
    raw = read_bytes(path)
    if not raw.strip():
        raise Unusable("empty")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise Unusable(f"not valid JSON (nested deeper than {MAX_DEPTH} levels)") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise Unusable(f"not valid JSON ({shown(str(e).splitlines()[0] if str(e) else type(e).__name__)[:120]})") from None
    if _depth_exceeds(value, MAX_DEPTH):
        raise Unusable(f"lists and objects nested deeper than {MAX_DEPTH} levels")
    return value


def kind(value: Any) -> str:
    """'a JSON list', 'null', … for a note."""
    if value is None:
        return "null"
    name = {dict: "object", list: "list", str: "string", bool: "boolean"}.get(type(value), "number")
    return f"a JSON {name}"


def number(value: Any, bound: float = MAX_VALUE) -> float | None:
    """``value`` as a float if it is a JSON number (not a boolean), finite and within +-``bound``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return f if math.isfinite(f) and abs(f) <= bound else None


def _fraction(value: Any) -> bool:
    f = number(value)
    return f is not None and 0.0 <= f <= 1.0


def _count(value: Any) -> bool:
    f = number(value, MAX_COUNT)
    return f is not None and f >= 0


def _text(value: Any) -> bool:
    return value is None or isinstance(value, str)


FRACTIONS = ("test_acc", "test_balanced_acc", "test_macro_f1", "best_test_acc_over_epochs", "val_acc",
             "val_balanced_acc", "test_ece")
MAX_BINS = 10_000  # ece_bins' bound
REQUIRED = ("test_acc", "classes", "per_class_acc", "confusion")


def _dataset_problem(summary: dict) -> str | None:
    ds = summary.get("dataset")
    if ds is None:
        return None
    if not isinstance(ds, dict):
        return f"'dataset' is {kind(ds)}, not an object"
    for key in ("name", "fingerprint"):
        if not _text(ds.get(key)):
            return f"'dataset.{key}' is {_quote(ds.get(key))}, not a string"
    return None


def _transfer_problem(summary: dict) -> str | None:
    transfer = summary.get("transfer")
    if transfer is None:
        return None
    if not isinstance(transfer, dict):
        return f"'transfer' is {kind(transfer)}, not an object"
    layers = transfer.get("layers", [])
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        return "'transfer.layers' is not a list of objects"
    return None


def _calibration_problem(summary: dict) -> str | None:
    """test_calibration_bins, where present: per bin an image count, the sum of those images'
    confidences (0 to the count) and how many of them were right (0 to the count)."""
    bins = summary.get("test_calibration_bins")
    if bins is None:
        return None
    keys = ("count", "confidence_sum", "correct")
    if not (isinstance(bins, dict) and all(isinstance(bins.get(k), list) for k in keys)
            and 1 <= len(bins["count"]) <= MAX_BINS and len({len(bins[k]) for k in keys}) == 1):
        return "'test_calibration_bins' is not count, confidence_sum and correct lists of one length"
    for n, conf, right in zip(*(bins[k] for k in keys)):
        # a float64 sum of float32 confidences of at most 1 may pass its count by a rounding error
        if not (_count(n) and _count(conf) and _count(right) and conf <= n * (1 + 1e-9) and right <= n):
            return ("'test_calibration_bins' holds a bin whose confidence sum or number correct is not a count "
                    "from 0 to its image count")
    return None


def summary_problem(summary: Any) -> str | None:
    """Why a classifier run's summary.json cannot enter the report, or None."""
    if not isinstance(summary, dict):
        return f"{kind(summary)}, not a JSON object"
    missing = [k for k in REQUIRED if k not in summary]
    if missing:
        return f"no {', '.join(repr(k) for k in missing)}"
    for key in FRACTIONS:
        if summary.get(key) is not None and not _fraction(summary[key]):
            return f"{key!r} is {_quote(summary[key])}, not a number from 0 to 1"
    classes = summary["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "'classes' is not a list of class names"
    c = len(classes)
    per_class = summary["per_class_acc"]
    if not isinstance(per_class, list) or len(per_class) != c:
        return f"'per_class_acc' is not a list of {c} accuracies (one per class)"
    bad = next((a for a in per_class if a is not None and not _fraction(a)), None)
    if bad is not None:
        return f"'per_class_acc' holds {_quote(bad)}, not a number from 0 to 1"
    cm = summary["confusion"]
    if not (isinstance(cm, list) and len(cm) == c and all(isinstance(row, list) and len(row) == c for row in cm)):
        return f"'confusion' is not a {c} x {c} matrix (one row and column per class)"
    if not all(_count(n) for row in cm for n in row):
        return "'confusion' holds something other than image counts (numbers from 0 to 2**53)"
    kept = summary.get("kept_class_counts")
    if kept not in (None, []) and not (isinstance(kept, list) and len(kept) == c and all(_count(n) for n in kept)):
        return f"'kept_class_counts' is not a list of {c} image counts"
    return _dataset_problem(summary) or _transfer_problem(summary) or _calibration_problem(summary)


def pretrain_summary_problem(summary: Any) -> str | None:
    """Why a pretraining run's summary.json cannot enter the report, or None."""
    if not isinstance(summary, dict):
        return f"{kind(summary)}, not a JSON object"
    best = summary.get("best_over_epochs", {})
    if not isinstance(best, dict):
        return f"'best_over_epochs' is {kind(best)}, not an object"
    figures = [(f"best_over_epochs.{k}", v) for k, v in best.items()]
    figures += [(k, v) for k, v in summary.items() if k.startswith(("val_", "test_"))]
    for key, value in figures:
        if value is not None and number(value) is None:
            return f"{key!r} is {_quote(value)}, not a number"
    return _dataset_problem(summary)


def config_problem(config: Any) -> str | None:
    """Why a run's config.json cannot be used, or None. Only what the report reads is checked."""
    if not isinstance(config, dict):
        return f"{kind(config)}, not a JSON object"
    for key in ("data", "dataset_fingerprint"):
        if not _text(config.get(key)):
            return f"{key!r} is {_quote(config[key])}, not a string"
    return None


def metrics_rows(path: Path) -> tuple[list[dict], str | None]:
    """The epochs of a metrics.jsonl, sorted by epoch (a repeated epoch: its last row), and a note
    on what was left out: lines that are not a JSON object with an epoch from 1 to 1,000,000, and
    values that are not finite numbers (NaN, infinity, text, beyond +-MAX_VALUE; null is allowed)."""
    if not (path.exists() or path.is_symlink()):
        return [], None
    try:
        raw = read_bytes(path)
    except Unusable as e:
        return [], f"{e}; no curves drawn from it"
    rows: dict[int, dict] = {}
    bad_lines: list[str] = []
    bad_values: list[str] = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            bad_lines.append(f"line {n} is not valid JSON")
            continue
        if not isinstance(row, dict):
            bad_lines.append(f"line {n} holds {kind(row)}")
            continue
        epoch = row.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= 1_000_000:
            bad_lines.append(f"line {n} has no epoch number")
            continue
        clean = {"epoch": epoch}
        for key, value in row.items():
            if key == "epoch" or value is None:
                continue
            if number(value) is None:
                bad_values.append(f"{shown(key)[:40]} on line {n}")
            else:
                clean[key] = float(value)
        rows[epoch] = clean
    problems = []
    if bad_lines:
        problems.append(f"{len(bad_lines)} line(s) left out ({bad_lines[0]}" + (", …)" if len(bad_lines) > 1 else ")"))
    if bad_values:
        problems.append(f"{len(bad_values)} value(s) that are not finite numbers left out ({bad_values[0]}"
                        + (", …)" if len(bad_values) > 1 else ")"))
    return [rows[e] for e in sorted(rows)], "; ".join(problems) or None
