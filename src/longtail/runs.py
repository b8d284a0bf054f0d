"""The run directory: config.json, metrics.jsonl, summary.json, checkpoint.pt.

Every write goes to a temporary file in the same folder, is fsync'ed and renamed over the
target, so a crash or a full disk leaves the previous version intact, never half a file.
A run is finished exactly when summary.json exists.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from longtail.errors import LongtailError

CHECKPOINT_FORMAT = "longtail-checkpoint/1"
_UMASK = os.umask(0)
os.umask(_UMASK)


def _disk_error(path: Path, e: OSError) -> LongtailError:
    if e.errno == errno.ENOSPC:
        return LongtailError(f"no space left on the device while writing {path}; earlier files are intact")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return LongtailError(f"cannot write {path}: permission denied")
    return LongtailError(f"cannot write {path}: {e.strerror or e}")


def atomic_write(path: Path, write) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, then rename it into place."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results should be as readable as any file
    except OSError as e:
        raise _disk_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _disk_error(path, e) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LongtailError(f"{path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LongtailError(f"{path} is not valid JSON: {e}") from None


def save_checkpoint(path: Path, state: dict) -> None:
    # Serialised in memory first: torch.save reports a full disk as an opaque "unexpected pos"
    # RuntimeError, a plain write as ENOSPC, which atomic_write turns into one line.
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    data = buffer.getbuffer()
    atomic_write(path, lambda f: f.write(data))


def load_checkpoint(path: Path) -> dict:
    """Load a longtail checkpoint safely (``weights_only=True``: tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise LongtailError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle safely means "not ours"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LongtailError(f"{path} is not a loadable longtail checkpoint ({first[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise LongtailError(f"{path} is not a longtail checkpoint")
    return state


RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt")


def is_run_config(config: Any) -> bool:
    """Whether a parsed config.json is one longtail wrote (it records the seed and the data)."""
    return isinstance(config, dict) and "dataset_fingerprint" in config and "seed" in config
LOCK_FILE = ".longtail.lock"


def _is_own_temp(name: str) -> bool:
    """A temporary file of :func:`atomic_write` for one of the run's files."""
    return name.endswith(".tmp") and any(name.startswith(f".{f}.") for f in RUN_FILES)


class RunDir:
    """One run's folder. Only rank 0 of a distributed run should hold one.

    longtail writes into a folder only if it is new, empty, or holds a run longtail made (its
    config.json); it never replaces or deletes a file it did not write.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    summary_path = property(lambda self: self.path / "summary.json")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")

    @property
    def finished(self) -> bool:
        return self.summary_path.exists()

    def check_usable(self, resume: bool) -> None:
        """Refuse a folder that is not a run's, or a run that --resume was not asked to continue."""
        if not self.path.exists():
            if self.path.is_symlink():
                raise LongtailError(f"run directory {self.path} is a broken symbolic link")
            return
        if not self.path.is_dir():
            raise LongtailError(f"run directory {self.path} exists and is not a folder")
        if self.config_path.exists():
            try:
                config = read_json(self.config_path) if self.config_path.is_file() else None
            except LongtailError:
                config = None
            if not is_run_config(config):
                raise LongtailError(f"{self.path} holds a config.json that longtail did not write; choose another --out")
            if self.finished and not resume:
                raise LongtailError(f"{self.path} already holds a finished run; choose another --out or delete it")
            if not resume:
                raise LongtailError(f"{self.path} holds an unfinished run; pass --resume to continue it or choose "
                                    "another --out")
            return
        try:
            foreign = sorted(e.name for e in self.path.iterdir() if e.name != LOCK_FILE and not _is_own_temp(e.name))
        except OSError as e:
            raise LongtailError(f"cannot read run directory {self.path}: {e.strerror}") from None
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise LongtailError(f"{self.path} is not empty and holds no longtail run ({shown}); longtail writes runs "
                                "only into new or empty folders: choose another --out")

    @contextlib.contextmanager
    def locked(self, enabled: bool = True) -> Iterator[None]:
        """Hold an exclusive lock on the run folder (released by the OS if the process dies), so a
        second process on the same run is refused; remove temporary files a killed process left.
        A folder created here and still empty at the end is removed again."""
        if not enabled:
            yield
            return
        created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
        except OSError as e:
            raise _disk_error(self.path, e) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise LongtailError(f"{self.path} is in use by another longtail process (pid {holder}); wait for it "
                                    "to finish or stop it") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            for entry in self.path.iterdir():
                if _is_own_temp(entry.name):
                    entry.unlink(missing_ok=True)
            try:
                yield
            finally:
                (self.path / LOCK_FILE).unlink(missing_ok=True)
        finally:
            os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    self.path.rmdir()  # only succeeds if nothing was written

    def prepare(self, config: dict, *, resume: bool = False) -> None:
        """Create the folder for a new run and write its config.json."""
        self.check_usable(resume)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _disk_error(self.path, e) from None
        if not os.access(self.path, os.W_OK):
            raise LongtailError(f"cannot write to run directory {self.path}: permission denied")
        if not self.config_path.exists():
            write_json(self.config_path, config)

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            if line.strip():
                rows.append(json.loads(line))
        return rows

    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite metrics.jsonl whole: tiny, and atomic unlike an append."""
        data = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows).encode()
        atomic_write(self.metrics_path, lambda f: f.write(data))

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_path, summary)

    def read_summary(self) -> dict:
        return read_json(self.summary_path)

    def read_config(self) -> dict:
        return read_json(self.config_path)
