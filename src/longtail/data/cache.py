"""The decoded cache: a dataset decoded once into one raw uint8 file, then memory-mapped.

``<key>.u8`` holds the pixels, N x C x H x W, training rows then test rows; ``<key>.json`` holds
the rest (labels, classes, skipped files, layout). The header is written last, so an entry
exists exactly when its header does: an interrupted decode leaves at most a temporary file.

Images are written one at a time as they are decoded, so the whole decoded set is never in
memory. It is read back with ``torch.from_file(shared=False)``: its pages come from the file
(file-backed, not anonymous memory), the kernel can drop and reread them, and a dataset larger
than memory is trained on by gathering one batch at a time. A write to the mapped tensor makes a
private copy of that page; the file never changes.

When the cache folder cannot hold the file (read-only, full), images are decoded into memory
instead, as long as they fit in half of it: the cache only saves time.
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch

from longtail.errors import LongtailError

# Free space left on the cache's disk after writing a dataset: a full disk breaks other programs.
DISK_MARGIN = 256 * 1024 * 1024
# A header holds one label per image; 1.3 million images make about 10 MB of JSON.
MAX_HEADER_BYTES = 512 * 1024 * 1024
_CONVERT_BYTES = 32 * 1024 * 1024  # read at a time when converting to one channel


@dataclass
class Decoded:
    """A decoded dataset: images (N, C, H, W), training rows first, possibly memory-mapped."""

    images: torch.Tensor
    train_labels: torch.Tensor
    test_labels: torch.Tensor
    header: dict  # classes, skipped, layout, ...

    @property
    def train_images(self) -> torch.Tensor:
        return self.images[:self.train_labels.numel()]

    @property
    def test_images(self) -> torch.Tensor:
        return self.images[self.train_labels.numel():]


def paths(stem: Path) -> tuple[Path, Path]:
    """(pixels, header) of the cache entry ``stem``."""
    return stem.with_name(stem.name + ".u8"), stem.with_name(stem.name + ".json")


def read_entry(stem: Path, fmt: int) -> Decoded | None:
    """The cached dataset at ``stem`` in format ``fmt``, memory-mapped; None when there is none
    or it is damaged (then it is decoded again, never trusted)."""
    pixels, header_path = paths(stem)
    if not header_path.is_file():
        return None
    try:
        if header_path.stat().st_size > MAX_HEADER_BYTES:
            return None
        header = json.loads(header_path.read_text(encoding="utf-8"))
        if header.get("format") != fmt:
            return None
        shape = [int(v) for v in header["shape"]]
        train = torch.tensor(header["labels"]["train"], dtype=torch.int64)
        test = torch.tensor(header["labels"]["test"], dtype=torch.int64)
        n_bytes = _product(shape)
        if len(shape) != 4 or min(shape) <= 0 or shape[0] != train.numel() + test.numel() \
                or pixels.stat().st_size != n_bytes:
            return None
        images = torch.from_file(str(pixels), shared=False, size=n_bytes, dtype=torch.uint8).view(shape)
        return Decoded(images, train, test, header)
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        return None


def _product(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


class ImageWriter(ABC):
    """Takes a dataset's images in order (training, then test) and keeps them where they will be
    read from. Every image is stored with three channels; ``finish`` keeps one if all were grey
    (a dataset is RGB unless every image in it is greyscale)."""

    def __init__(self, count: int, height: int, width: int):
        self.count, self.height, self.width = count, height, width
        self.written = 0
        self.all_gray = True

    def add(self, img: torch.Tensor) -> None:
        """One uint8 (1 or 3, H, W) image."""
        self.all_gray &= img.shape[0] == 1
        self._store(img.expand(3, self.height, self.width).unsqueeze(0))

    def add_batch(self, images: torch.Tensor) -> None:
        """uint8 (n, 3, H, W) colour images."""
        self.all_gray = False
        self._store(images)

    def finish(self, train_labels: list[int], test_labels: list[int], header: dict) -> Decoded:
        if self.written != self.count or len(train_labels) + len(test_labels) != self.count:
            raise RuntimeError(f"{self.written} images written of {self.count}")
        return self._finish(torch.tensor(train_labels, dtype=torch.int64),
                            torch.tensor(test_labels, dtype=torch.int64), header)

    @abstractmethod
    def _store(self, images: torch.Tensor) -> None:
        """Append ``images`` (uint8, n x 3 x H x W) after those already written."""

    @abstractmethod
    def _finish(self, train: torch.Tensor, test: torch.Tensor, header: dict) -> Decoded:
        """The written images as a Decoded dataset with these labels and header."""

    def abort(self) -> None:
        """Drop what was written (the decode failed)."""


class FileWriter(ImageWriter):
    """Writes the cache entry: pixels appended to a temporary file, renamed when complete."""

    def __init__(self, stem: Path, fmt: int, count: int, height: int, width: int):
        super().__init__(count, height, width)
        self.stem, self.fmt = stem, fmt
        self.pixels, self.header_path = paths(stem)
        self.tmp = self.pixels.with_name(f"{self.pixels.name}.tmp{os.getpid()}")
        self.file = open(self.tmp, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in finish or abort

    def _store(self, images: torch.Tensor) -> None:
        try:
            self.file.write(images.contiguous().numpy().data)
        except OSError as e:
            self.abort()
            raise LongtailError(self._cannot(e)) from None
        self.written += images.shape[0]

    def _finish(self, train: torch.Tensor, test: torch.Tensor, header: dict) -> Decoded:
        channels = 1 if self.all_gray else 3
        shape = [self.count, channels, self.height, self.width]
        try:
            self.file.close()
            if self.all_gray:
                self._keep_one_channel()
            os.replace(self.tmp, self.pixels)
            record = {**header, "format": self.fmt, "shape": shape,
                      "labels": {"train": train.tolist(), "test": test.tolist()}}
            tmp_header = self.header_path.with_name(f"{self.header_path.name}.tmp{os.getpid()}")
            tmp_header.write_text(json.dumps(record), encoding="utf-8")
            os.replace(tmp_header, self.header_path)
        except OSError as e:
            self.abort()
            raise LongtailError(self._cannot(e)) from None
        images = torch.from_file(str(self.pixels), shared=False, size=_product(shape), dtype=torch.uint8)
        return Decoded(images.view(shape), train, test, header)

    def _keep_one_channel(self) -> None:
        """Rewrite the three-channel file with the first channel only, a block of rows at a time."""
        row = 3 * self.height * self.width
        block = bytearray(max(1, _CONVERT_BYTES // row) * row)
        one = self.tmp.with_name(self.tmp.name + ".grey")
        with open(self.tmp, "rb") as src, open(one, "wb") as dst:
            while n := src.readinto(block):
                rows = torch.frombuffer(block, dtype=torch.uint8)[:n].view(-1, 3, self.height, self.width)
                dst.write(rows[:, 0].contiguous().numpy().data)
        os.replace(one, self.tmp)

    def abort(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass
        for leftover in (self.tmp, self.tmp.with_name(self.tmp.name + ".grey")):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:
                pass

    def _cannot(self, e: OSError) -> str:
        return (f"cannot write the decoded images to {self.pixels.parent} ({e.strerror}); free space there or set "
                "LONGTAIL_DATA to another folder")


class MemoryWriter(ImageWriter):
    """Decodes into one in-memory tensor, when the cache folder cannot hold the file."""

    def __init__(self, count: int, height: int, width: int, why_not_cached: str):
        super().__init__(count, height, width)
        need = count * 3 * height * width
        limit = memory_bytes()
        if need > limit // 2:
            raise LongtailError(f"{count} images of {width}x{height} px need {need / 2**30:.1f} GiB decoded; the cache "
                                f"folder cannot hold them ({why_not_cached}) and they are more than half of the "
                                f"{limit / 2**30:.1f} GiB of memory here (set LONGTAIL_DATA to a folder with space)")
        try:
            self.images = torch.empty((count, 3, height, width), dtype=torch.uint8)
        except (RuntimeError, MemoryError):
            raise LongtailError(f"could not allocate {need / 2**30:.1f} GiB for {count} images of "
                                f"{width}x{height} px") from None

    def _store(self, images: torch.Tensor) -> None:
        self.images[self.written:self.written + images.shape[0]] = images
        self.written += images.shape[0]

    def _finish(self, train: torch.Tensor, test: torch.Tensor, header: dict) -> Decoded:
        images = self.images[:, :1].clone() if self.all_gray else self.images
        return Decoded(images, train, test, header)


def open_writer(stem: Path, fmt: int, count: int, height: int, width: int) -> ImageWriter:
    """A writer into the cache entry ``stem``, or into memory when the cache folder cannot hold it."""
    need = count * 3 * height * width
    folder = stem.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if free < need + DISK_MARGIN:
            why = f"{free / 2**30:.1f} GiB free, {need / 2**30:.1f} GiB needed"
        else:
            return FileWriter(stem, fmt, count, height, width)
    except OSError as e:
        why = e.strerror or type(e).__name__
    return MemoryWriter(count, height, width, why)


def memory_bytes() -> int:
    """The memory this process may use: physical memory, or less under a cgroup."""
    limits = [os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
    for cgroup_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limits.append(int(Path(cgroup_file).read_text().strip()))
        except (OSError, ValueError):
            pass
    return min(limits)

