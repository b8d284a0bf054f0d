"""Which files of a report folder longtail wrote, so that a report replaces or deletes only those.

DIR/.longtail-report.json records the SHA-256 of every file a report wrote: report.html and the
figures under DIR/figures/. A new report, given all it is about to write (:meth:`ReportFiles.add`),
then (:meth:`ReportFiles.commit`):

- writes a file that does not exist yet;
- replaces a file only when the record has it and it still has a recorded hash (unchanged since);
- refuses, before it changes anything, when a file it is about to write exists and is not
  longtail's (not in the record, changed since, a folder or a symbolic link): one LongtailError
  names it and the user moves it away. It refuses rather than writing beside it, as git refuses
  to check out over an untracked file: a figure under another name would break the links to it,
  and a silent rename is easy to miss;
- deletes a figure an earlier report wrote and this one no longer draws (an arm since removed)
  only when it is unchanged; a changed one stays where it is, with a note.
A file the record does not list is never touched, whatever its name. Entries of the record are
taken only for names a report writes (report.html, figures/<stem>.svg|pdf), so an edited record
cannot point a deletion outside the folder.

The record is written twice: before any file, listing the old and the new hash of each (a crash
midway leaves every file old or new, and both are recognised), and after, listing what is there.
A folder last reported on by a longtail that kept no record is recognised by ``legacy``
(html.legacy_outputs: the page's own header, and figures byte-for-byte embedded in it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from longtail.errors import LongtailError
from longtail.report.validate import shown
from longtail.runs import atomic_write

RECORD = ".longtail-report.json"
FORMAT = "longtail-report-files/1"
PAGE = "report.html"
FIGURES = "figures"
NAME = re.compile(r"report\.html|figures/[A-Za-z0-9_-][A-Za-z0-9._-]*\.(?:svg|pdf)")


def sha256_of(path: Path) -> str | None:
    """The SHA-256 of a regular file, None for anything else (missing, a folder, a symbolic link)."""
    if path.is_symlink() or not path.is_file():
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()  # a dangling link is there too


class ReportFiles:
    """The files one report writes into ``root``, checked against what longtail wrote before."""

    def __init__(self, root: Path, legacy: Callable[[Path], dict[str, set[str]]]):
        self.root = Path(root)
        self.pending: dict[str, bytes] = {}
        figures = self.root / FIGURES
        if _present(figures) and not figures.is_dir():
            raise LongtailError(f"{shown(figures)} is not a folder, and the report puts its figures there: "
                                "move it away and run the report again")
        self.known = self._read_record() if _present(self.root / RECORD) else legacy(self.root)

    def _read_record(self) -> dict[str, set[str]]:
        path = self.root / RECORD
        refused = LongtailError(f"{shown(path)} is not longtail's record of the report's files, and the report "
                                "keeps that record there: move it away and run the report again")
        if path.is_symlink() or not path.is_file():
            raise refused
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError):
            raise refused from None
        if not (isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("files"), dict)):
            raise refused
        return {name: {h for h in hashes if isinstance(h, str)} for name, hashes in doc["files"].items()
                if isinstance(name, str) and NAME.fullmatch(name) and isinstance(hashes, list)}

    def add(self, name: str, content: bytes) -> None:
        """Queue ``content`` for ``root/name`` (a name NAME matches)."""
        assert NAME.fullmatch(name), name
        self.pending[name] = content

    def _ours(self, name: str) -> bool:
        """Whether ``root/name`` may be replaced: absent, or unchanged since longtail wrote it."""
        path = self.root / name
        return not _present(path) or sha256_of(path) in self.known.get(name, set())

    def _write_record(self, files: dict[str, set[str]]) -> None:
        doc = {"format": FORMAT, "written_by": "longtail report; lists the files it may replace or delete",
               "files": {name: sorted(hashes) for name, hashes in sorted(files.items())}}
        data = (json.dumps(doc, indent=1) + "\n").encode()
        atomic_write(self.root / RECORD, lambda f: f.write(data))

    def commit(self, note: Callable[[str], None]) -> None:
        """Write every queued file, remove the figures of an earlier report this one did not draw,
        and record what is there; refuse (LongtailError) before any change if a file is not ours."""
        foreign = [name for name in self.pending if not self._ours(name)]
        if foreign:
            more = f" (and {len(foreign) - 1} more: {', '.join(foreign[1:4])}{', …' if len(foreign) > 4 else ''})" \
                if len(foreign) > 1 else ""
            raise LongtailError(f"{shown(self.root / foreign[0])} was not written by longtail or was changed since, "
                                f"and the report would replace it{more}: move it away and run the report again")
        new = {name: {sha256(content)} for name, content in self.pending.items()}
        stale = {name: hashes for name, hashes in self.known.items() if name not in new}
        self._write_record({**stale, **{name: self.known.get(name, set()) | h for name, h in new.items()}})
        for name, content in self.pending.items():
            atomic_write(self.root / name, lambda f, c=content: f.write(c))
        for name, hashes in stale.items():
            path = self.root / name
            if not _present(path):
                continue
            if sha256_of(path) in hashes:
                try:
                    path.unlink()
                except OSError as e:
                    note(f"{shown(path)} from an earlier report could not be removed ({shown(e.strerror or e)})")
                    new[name] = hashes  # still ours: a later report may remove it
            else:
                note(f"{shown(path)} from an earlier report was changed since; left in place")
        self._write_record(new)
