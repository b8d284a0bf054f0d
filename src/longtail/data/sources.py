"""Where pixels come from: the official CIFAR-10, or an image-folder tree (a directory or a zip).

Every source ends as one :class:`ImageDataset`: uint8 tensors of shape (N, C, H, W) and int64
labels, with classes indexed in sorted class-name order. Decoded arrays are cached on disk,
keyed by a hash of the source, so the second load is a single tensor read.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch
from torchvision.io import ImageReadMode, decode_image

from longtail.errors import LongtailError

# torchvision 0.29 points to TorchCodec for decoding; its still-supported decoders are what the
# project uses (no extra dependency), so the notice is silenced here and not shown to users.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)

MIN_IMAGE_SIDE = 16
# A 32x32 JPEG is ~1 KB; anything above this is not a small-image dataset member and could be a
# decompression bomb, so it is refused before decoding.
MAX_MEMBER_BYTES = 16 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
CACHE_FORMAT = 1


@dataclass(frozen=True)
class ImageDataset:
    """A whole dataset in memory: train and test splits as uint8 NCHW tensors."""

    name: str
    classes: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    fingerprint: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_images.shape[1:]
        return int(c), int(h), int(w)


def data_home() -> Path:
    """The cache folder: ``$LONGTAIL_DATA``, or ``~/.cache/longtail``."""
    return Path(os.environ.get("LONGTAIL_DATA") or Path.home() / ".cache" / "longtail")


def load_dataset(spec: str, cache_dir: Path | None = None) -> ImageDataset:
    """Load ``cifar10`` (official, downloaded and verified) or an image-folder path (dir or .zip)."""
    cache_dir = Path(cache_dir) if cache_dir is not None else data_home()
    if spec.lower() in {"cifar10", "cifar-10"}:
        return _load_official_cifar10(cache_dir)
    path = Path(spec).expanduser()
    if not path.exists():
        raise LongtailError(f"data path not found: {spec} (give an image folder, a .zip, or 'cifar10')")
    if not os.access(path, os.R_OK):
        raise LongtailError(f"data path is not readable: {spec}")
    if path.is_dir():
        return _cached(path, cache_dir, _directory_fingerprint(path), lambda: _read_folder_tree(_DirTree(path)))
    if zipfile.is_zipfile(path):
        return _cached(path, cache_dir, _file_sha256(path), lambda: _read_folder_tree(_ZipTree(path)))
    raise LongtailError(f"data path is neither a folder nor a zip archive: {spec}")


# --- caching -------------------------------------------------------------------------------------


def _cached(path: Path, cache_dir: Path, fingerprint: str, decode) -> ImageDataset:
    cache_file = cache_dir / "decoded" / f"{fingerprint}.pt"
    if cache_file.exists():
        try:
            blob = torch.load(cache_file, weights_only=True)
            if blob.get("format") == CACHE_FORMAT:
                return _dataset_from_blob(blob, path.name, fingerprint)
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
            pass
    ds = decode()
    ds = ImageDataset(path.name, ds.classes, ds.train_images, ds.train_labels, ds.test_images,
                      ds.test_labels, fingerprint)
    _write_cache(cache_file, ds)
    return ds


def _dataset_from_blob(blob: dict, name: str, fingerprint: str) -> ImageDataset:
    return ImageDataset(name, list(blob["classes"]), blob["train_images"], blob["train_labels"],
                        blob["test_images"], blob["test_labels"], fingerprint)


def _write_cache(cache_file: Path, ds: ImageDataset) -> None:
    blob = {"format": CACHE_FORMAT, "classes": ds.classes, "train_images": ds.train_images,
            "train_labels": ds.train_labels, "test_images": ds.test_images, "test_labels": ds.test_labels}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
        torch.save(blob, tmp)
        os.replace(tmp, cache_file)
    except OSError:
        # The cache only saves time; a read-only or full cache folder must not stop a run.
        pass


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _directory_fingerprint(root: Path) -> str:
    # Hashing every image byte would cost as much as decoding; names, sizes and mtimes change
    # whenever a file does.
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            st = os.stat(os.path.join(dirpath, fn))
            rel = os.path.relpath(os.path.join(dirpath, fn), root)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# --- image-folder trees --------------------------------------------------------------------------


class _DirTree:
    """An image-folder tree on disk: relative POSIX paths to files."""

    def __init__(self, root: Path):
        self.root = root

    def files(self) -> dict[str, int]:
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            if rel_dir != "." and rel_dir.count("/") == 1:
                out.setdefault(rel_dir + "/", 0)  # keeps empty class folders visible
            for fn in filenames:
                full = os.path.join(dirpath, fn)
                st = os.stat(full)
                if stat.S_ISREG(st.st_mode):
                    out[str(PurePosixPath(rel_dir) / fn) if rel_dir != "." else fn] = st.st_size
        return out

    def read(self, name: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as e:
            raise LongtailError(f"cannot read {self.root / name}: {e.strerror}") from None


class _ZipTree:
    """An image-folder tree inside a zip, read in place (never extracted to disk)."""

    def __init__(self, path: Path):
        self.path = path
        self._prefix = ""
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise LongtailError(f"cannot open zip archive {path}: {e}") from None

    def files(self) -> dict[str, int]:
        out = {}
        for info in self.zip.infolist():
            name = info.filename
            parts = PurePosixPath(name).parts
            if name.startswith("/") or "\\" in name or ".." in parts or (parts and ":" in parts[0]):
                raise LongtailError(f"unsafe member name in {self.path.name}: {name!r}")
            out[name] = 0 if info.is_dir() else info.file_size
        self._prefix, stripped = _strip_common_root(out)
        return stripped

    def read(self, name: str) -> bytes:
        full = self._prefix + name
        try:
            return self.zip.read(full)
        except (zipfile.BadZipFile, OSError, KeyError, EOFError, zipfile.LargeZipFile) as e:
            raise LongtailError(f"cannot read {full} from {self.path.name}: {e}") from None



def _strip_common_root(files: dict[str, int]) -> tuple[str, dict[str, int]]:
    """Allow one top-level folder wrapping train/ and test/, as zip tools often add."""
    top = {PurePosixPath(n).parts[0] for n in files if PurePosixPath(n).parts}
    if "train" in top or len(top) != 1:
        return "", files
    root = top.pop() + "/"
    return root, {n[len(root):]: s for n, s in files.items() if n != root}


def _read_folder_tree(tree) -> ImageDataset:
    files = tree.files()
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for name, size in files.items():
        parts = PurePosixPath(name).parts
        if len(parts) < 2 or parts[0] not in splits or any(p.startswith(".") for p in parts):
            continue
        cls = parts[1]
        members = splits[parts[0]].setdefault(cls, [])
        if len(parts) == 2 or name.endswith("/"):
            continue
        if size > MAX_MEMBER_BYTES:
            raise LongtailError(f"{name} is {size} bytes, too large for an image member (limit {MAX_MEMBER_BYTES})")
        members.append(name)
    where = getattr(tree, "path", getattr(tree, "root", ""))
    for split in ("train", "test"):
        if not splits[split]:
            raise LongtailError(f"{where} has no {split}/<class>/ folders (expected train/<class>/* and test/<class>/*)")
    classes = sorted(splits["train"])
    if len(classes) < 2:
        raise LongtailError(f"{where} has only one class ({classes[0]}); at least 2 are needed")
    extra = sorted(set(splits["test"]) - set(classes))
    if extra:
        raise LongtailError(f"test/ has classes that train/ lacks: {', '.join(extra)}")
    for split in ("train", "test"):
        for cls, members in splits[split].items():
            if not members:
                raise LongtailError(f"class folder {split}/{cls} is empty")
    decoded = {}
    shape = None
    for split in ("train", "test"):
        images, labels = [], []
        for idx, cls in enumerate(classes):
            for name in sorted(splits[split].get(cls, [])):
                img = _decode(name, tree.read(name))
                if shape is None:
                    shape = tuple(img.shape[1:])
                    if min(shape) < MIN_IMAGE_SIDE:
                        raise LongtailError(f"{name} is {shape[1]}x{shape[0]} px; images must be at least {MIN_IMAGE_SIDE} px")
                elif tuple(img.shape[1:]) != shape:
                    raise LongtailError(
                        f"{name} is {img.shape[2]}x{img.shape[1]} px but earlier images are {shape[1]}x{shape[0]}; "
                        "all images of a dataset must have one size")
                images.append(img)
                labels.append(idx)
        decoded[split] = (images, torch.tensor(labels, dtype=torch.int64))
    channels = {img.shape[0] for images, _ in decoded.values() for img in images}
    to_rgb = channels != {1}
    out = {}
    for split, (images, labels) in decoded.items():
        if to_rgb:
            images = [img.expand(3, -1, -1) if img.shape[0] == 1 else img for img in images]
        out[split] = (torch.stack(images).contiguous(), labels)
    return ImageDataset(str(where), classes, out["train"][0], out["train"][1], out["test"][0], out["test"][1], "")


def _decode(name: str, data: bytes) -> torch.Tensor:
    if not data:
        raise LongtailError(f"cannot decode image {name}: the file is empty")
    _check_pixel_bound(name, data)
    try:
        img = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
    except (RuntimeError, ValueError) as e:
        raise LongtailError(f"cannot decode image {name}: {str(e).splitlines()[0] if str(e) else 'not an image'}") from None
    if img.shape[0] == 2:  # grey + alpha
        img = img[:1]
    elif img.shape[0] == 4:  # RGBA
        img = img[:3]
    return img


def _check_pixel_bound(name: str, data: bytes) -> None:
    """Refuse images whose header declares more than MAX_IMAGE_PIXELS, before decoding them."""
    from PIL import Image  # Pillow reads only the header here; decoding stays with torchvision

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - torchvision's decoder gives the real error message
        return
    if w * h > MAX_IMAGE_PIXELS:
        raise LongtailError(f"{name} declares {w}x{h} px, more than the {MAX_IMAGE_PIXELS} pixel limit")


# --- official CIFAR-10 ---------------------------------------------------------------------------


def _load_official_cifar10(cache_dir: Path) -> ImageDataset:
    from torchvision.datasets import CIFAR10

    fingerprint = "cifar10-official-" + CIFAR10.tgz_md5
    cache_file = cache_dir / "decoded" / f"{fingerprint}.pt"
    if cache_file.exists():
        try:
            blob = torch.load(cache_file, weights_only=True)
            if blob.get("format") == CACHE_FORMAT:
                return _dataset_from_blob(blob, "cifar10", fingerprint)
        except Exception:  # noqa: BLE001
            pass
    root = cache_dir / "cifar10"
    root.mkdir(parents=True, exist_ok=True)
    try:
        # torchvision checks the archive's md5 after download and every batch file's md5 in the
        # constructor, before anything is unpickled.
        train = CIFAR10(str(root), train=True, download=True)
        test = CIFAR10(str(root), train=False, download=False)
    except (OSError, RuntimeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LongtailError(
            f"could not get CIFAR-10 ({reason}); put cifar-10-python.tar.gz from "
            f"https://www.cs.toronto.edu/~kriz/ into {root}, or pass --data PATH to an image folder or zip") from None
    classes = list(train.classes)
    ds = ImageDataset(
        "cifar10", classes,
        torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(train.targets, dtype=torch.int64),
        torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(test.targets, dtype=torch.int64),
        fingerprint)
    _write_cache(cache_file, ds)
    return ds
