"""Where pixels come from: the official CIFAR-10, or an image-folder tree (a directory or a zip).

Every source ends as one :class:`ImageDataset`: uint8 tensors of shape (N, C, H, W) and int64
labels, with classes indexed in sorted class-name order. Decoded arrays are cached on disk,
keyed by a hash of the source, so the second load is a single tensor read.

An image-folder tree is ``train/<class>/...`` and ``test/<class>/...``, optionally inside one
wrapper folder (as macOS Finder and other zip tools make). Files are chosen by extension, as
torchvision's ImageFolder does (plus .gif); everything else is skipped and counted by reason in
``ImageDataset.skipped``. Every file or member is read with a size cap, whatever it claims to
be, and every image's dimensions are checked before it is decoded (see images.py, which also
states the colour rule).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import torch

from longtail.data.images import MAX_IMAGE_PIXELS, Probe, decode, probe, quiet_native_stderr, shown
from longtail.errors import LongtailError

__all__ = ["ImageDataset", "data_home", "load_dataset", "MAX_IMAGE_PIXELS"]

MIN_IMAGE_SIDE = 16
# A 32x32 JPEG is ~1 KB; anything above this is not a small-image dataset member and could be a
# decompression bomb, so it is refused before decoding (and reading stops at this many bytes).
MAX_MEMBER_BYTES = 16 * 1024 * 1024
_READ_STEP = 1024 * 1024
# Files and folders looked at in one tree; ImageNet has 1.3 million. More means a link into a big
# folder or a hostile archive, and listing it would take long before any error could be given.
MAX_ENTRIES = 5_000_000
# torchvision's ImageFolder extensions, plus .gif (which the loader has always read).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
# Bumped whenever what a tree decodes to can change (2: files chosen by extension, skip counts,
# colour rule); it is part of the cache file's name, so an older cache is never read.
CACHE_FORMAT = 2
SPLITS = ("train", "test")

# Why a file was not read, as kept in ImageDataset.skipped.
SKIP_SYSTEM = "system file"  # macOS and Windows bookkeeping: __MACOSX/, ._*, .DS_Store, Thumbs.db
SKIP_HIDDEN = "hidden"  # other names starting with "."
SKIP_NOT_IMAGE = "not an image"  # an extension ImageFolder would not read
SKIP_OUTSIDE = "outside train/ and test/"
SKIP_NO_CLASS = "not in a class folder"  # a file directly in train/ or test/
_SYSTEM_NAMES = {"__macosx", ".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r", ".spotlight-v100",
                 ".trashes", ".fseventsd", "$recycle.bin"}
# Zip compression methods by number, for messages; only stored and deflate members are read.
_ZIP_METHODS = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "XZ", 97: "WavPack", 98: "PPMd",
                99: "AES-encrypted"}


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
    # Files of the tree that were not read, reason -> count (see SKIP_*); empty for CIFAR-10.
    skipped: dict[str, int] = field(default_factory=dict, hash=False)

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
    hint = "give an image folder, a .zip, or 'cifar10'"
    if not isinstance(spec, str) or not spec.strip():
        # An empty path would mean the current folder, which is never what was meant.
        raise LongtailError(f"the data path is empty ({hint})")
    if spec.lower() in {"cifar10", "cifar-10"}:
        return _load_official_cifar10(cache_dir)
    if "\0" in spec:
        raise LongtailError(f"the data path {shown(spec)} contains a NUL character")
    path = Path(spec).expanduser()
    try:
        st = os.stat(path)  # follows a link to the folder or zip, as a user expects
    except FileNotFoundError:
        raise LongtailError(f"data path not found: {shown(spec)} ({hint})") from None
    except OSError as e:
        what = "is a symbolic link loop" if e.errno == errno.ELOOP else f"cannot be opened ({e.strerror})"
        raise LongtailError(f"data path {shown(spec)} {what}") from None
    if stat.S_ISDIR(st.st_mode):
        if not os.access(path, os.R_OK | os.X_OK):
            raise LongtailError(f"data path is not readable: {shown(spec)}")
        tree = _DirTree(path, st)
        listing = _list_tree(tree)
        return _cached(path, cache_dir, _listing_fingerprint(listing), lambda: _read_folder_tree(tree, listing))
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO would wait forever for a writer; a device could be endless.
        raise LongtailError(f"data path {shown(spec)} is a {_file_kind(st.st_mode)}, not a folder or a zip archive")
    with _open_regular(path, spec) as f:
        try:
            is_zip = zipfile.is_zipfile(f)
            f.seek(0)
            fingerprint = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as e:
            raise LongtailError(f"cannot read {shown(spec)}: {e.strerror}") from None
        if not is_zip:
            raise LongtailError(f"data path is neither a folder nor a zip archive: {shown(spec)}")

        def decode_zip() -> ImageDataset:
            tree = _ZipTree(path, f)
            return _read_folder_tree(tree, _list_tree(tree))

        return _cached(path, cache_dir, fingerprint, decode_zip)


# --- caching -------------------------------------------------------------------------------------


def _cached(path: Path, cache_dir: Path, fingerprint: str, decode_tree: Callable[[], ImageDataset]) -> ImageDataset:
    name = shown(path.name)
    cache_file = cache_dir / "decoded" / f"{fingerprint}.v{CACHE_FORMAT}.pt"
    ds = _read_cache(cache_file, name, fingerprint, CACHE_FORMAT)
    if ds is None:
        ds = decode_tree()
        ds = ImageDataset(name, ds.classes, ds.train_images, ds.train_labels, ds.test_images, ds.test_labels,
                          fingerprint, ds.skipped)
        _write_cache(cache_file, ds, CACHE_FORMAT)
    return ds


def _read_cache(cache_file: Path, name: str, fingerprint: str, fmt: int) -> ImageDataset | None:
    if not cache_file.exists():
        return None
    try:
        blob = torch.load(cache_file, weights_only=True)
        if blob.get("format") == fmt:
            return ImageDataset(name, list(blob["classes"]), blob["train_images"], blob["train_labels"],
                                blob["test_images"], blob["test_labels"], fingerprint, dict(blob.get("skipped", {})))
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        pass
    return None


def _write_cache(cache_file: Path, ds: ImageDataset, fmt: int) -> None:
    blob = {"format": fmt, "classes": ds.classes, "train_images": ds.train_images, "skipped": ds.skipped,
            "train_labels": ds.train_labels, "test_images": ds.test_images, "test_labels": ds.test_labels}
    tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(blob, tmp)
        os.replace(tmp, cache_file)
    except (OSError, RuntimeError):
        # The cache only saves time; a read-only or full cache folder must not stop a run.
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _listing_fingerprint(listing: _Listing) -> str:
    # Hashing every image byte would cost as much as decoding; names, sizes and mtimes change
    # whenever a file does. Skipped names count too: they are part of what `data info` reports.
    h = hashlib.sha256()
    for line in sorted(listing.stamps):
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return h.hexdigest()


# --- files ---------------------------------------------------------------------------------------


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
             (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "folder"), (stat.S_ISREG, "file")]
    return next((text for test, text in kinds if test(mode)), "special file")


def _open_regular(path: Path, shown_as: str) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file, without ever blocking."""
    try:
        # O_NONBLOCK: if the file was swapped for a FIFO since it was listed, open returns at
        # once instead of waiting for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise LongtailError(f"cannot read {shown(shown_as)}: {e.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise LongtailError(f"{shown(shown_as)} is a {_file_kind(mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def _read_capped(f: BinaryIO, name: str) -> bytes:
    """At most MAX_MEMBER_BYTES bytes of ``f``; refuses more, whatever the file or archive claimed.

    Read in steps, so a zip member that lies about its size inflates one step before its CRC
    check fails, not a whole cap's worth.
    """
    chunks, size = [], 0
    while size <= MAX_MEMBER_BYTES:
        chunk = f.read(min(_READ_STEP, MAX_MEMBER_BYTES + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise LongtailError(f"{shown(name)} is more than {MAX_MEMBER_BYTES} bytes, too large for an image member "
                        f"(limit {MAX_MEMBER_BYTES})")


def read_image_file(path: Path) -> torch.Tensor:
    """One image file's pixels, uint8 (1 or 3, H, W), under the same caps and colour rule as a
    dataset's members; anything unreadable is refused by name."""
    with _open_regular(path, str(path)) as f:
        data = _read_capped(f, str(path))
    with quiet_native_stderr():
        return decode(str(path), data, probe(str(path), data))


# --- image-folder trees --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Node:
    """One entry of a folder: a ``dir``, a ``file``, or what is wrong with it (a broken link, a FIFO)."""

    name: str
    kind: str
    size: int = 0
    stamp: str = ""  # changes whenever the file does
    ident: tuple[int, int] | None = None  # a folder's (device, inode), to catch link loops


class _DirTree:
    """An image-folder tree on disk. Symbolic links are followed, as ImageFolder does."""

    def __init__(self, root: Path, st: os.stat_result):
        self.root = root
        self.where = shown(str(root))
        self.ident = (st.st_dev, st.st_ino)

    def scan(self, rel: str) -> list[_Node]:
        try:
            with os.scandir(self.root / rel) as it:
                entries = list(it)
        except OSError as e:
            raise LongtailError(f"cannot read folder {shown(str(self.root / rel))}: {e.strerror}") from None
        return [self._node(e) for e in entries]

    @staticmethod
    def _node(entry: os.DirEntry) -> _Node:
        try:
            st = entry.stat()  # follows links
        except FileNotFoundError:
            try:
                target = os.readlink(entry.path)
            except OSError:  # gone meanwhile, or not a link at all
                return _Node(entry.name, "file that vanished while being listed")
            return _Node(entry.name, f"broken symbolic link (to {shown(target)})")
        except OSError as e:
            return _Node(entry.name, "symbolic link loop" if e.errno == errno.ELOOP else f"unreadable entry ({e.strerror})")
        if stat.S_ISDIR(st.st_mode):
            return _Node(entry.name, "dir", ident=(st.st_dev, st.st_ino))
        if stat.S_ISREG(st.st_mode):
            return _Node(entry.name, "file", st.st_size, f"{st.st_size}:{st.st_mtime_ns}")
        return _Node(entry.name, _file_kind(st.st_mode))

    def read(self, rel: str) -> bytes:
        path = self.root / rel
        with _open_regular(path, str(path)) as f:
            try:
                return _read_capped(f, rel)
            except OSError as e:
                raise LongtailError(f"cannot read {shown(str(path))}: {e.strerror}") from None


class _ZipTree:
    """An image-folder tree inside a zip, read in place (never extracted to disk)."""

    def __init__(self, path: Path, f: BinaryIO):
        self.path = path
        self.where = shown(str(path))
        self.ident = None
        try:
            self.zip = zipfile.ZipFile(f)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
                OverflowError, IndexError, KeyError) as e:
            # ValueError includes a name flagged UTF-8 that is not; the others come from damaged records.
            raise LongtailError(f"cannot open zip archive {self.where}: {shown(str(e) or type(e).__name__)}") from None
        if len(infos) > MAX_ENTRIES:
            raise LongtailError(f"{self.where} has {len(infos)} members, more than the {MAX_ENTRIES} limit")
        self._dirs: dict[str, dict[str, _Node]] = {"": {}}
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            self._add(info)

    def _add(self, info: zipfile.ZipInfo) -> None:
        name = info.filename
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or (parts and ":" in parts[0]):
            raise LongtailError(f"unsafe member name in {shown(self.path.name)}: {shown(repr(name))}")
        parts = [p for p in parts if p not in ("", ".")]
        if not parts:
            return
        is_dir = name.endswith("/")
        folder = ""
        for part in parts if is_dir else parts[:-1]:
            sub = folder + part + "/"
            node = self._dirs[folder].get(part)
            if node is None:
                self._dirs[folder][part] = _Node(part, "dir")
                self._dirs[sub] = {}
            elif node.kind != "dir":
                raise LongtailError(f"{shown(self.path.name)} holds both a file and a folder named {shown(sub[:-1])}")
            folder = sub
        if is_dir:
            return
        leaf, rel = parts[-1], folder + parts[-1]
        if leaf in self._dirs[folder]:
            what = "a file and a folder named" if self._dirs[folder][leaf].kind == "dir" else "two members named"
            raise LongtailError(f"{shown(self.path.name)} holds {what} {shown(rel)}")
        is_link = info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)
        kind = "symbolic link stored in the archive (links are not followed)" if is_link else "file"
        self._dirs[folder][leaf] = _Node(leaf, kind, info.file_size)
        self._infos[rel] = info

    def scan(self, rel: str) -> list[_Node]:
        return list(self._dirs[rel].values())

    def read(self, rel: str) -> bytes:
        info, where = self._infos[rel], f"{shown(rel)} in {shown(self.path.name)}"
        if info.flag_bits & 0x1:
            raise LongtailError(f"{where} is encrypted; longtail reads only unencrypted archives")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # Python inflates bzip2 and LZMA members without a bound on the output of one read
            # (a 4 KiB bzip2 block can grow to gigabytes), so only stored and deflate are read.
            method = _ZIP_METHODS.get(info.compress_type, f"method {info.compress_type}")
            raise LongtailError(f"{where} uses {method} compression, which longtail does not read; "
                                "re-create the zip with ordinary (deflate) compression")
        try:
            # ZipExtFile inflates at most what each read asks for, and stops at the declared size
            # (then checks the CRC), so a member that lies about its size cannot grow past the cap.
            with self.zip.open(info) as f:
                return _read_capped(f, rel)
        except LongtailError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError,
                OverflowError, KeyError) as e:
            raise LongtailError(f"cannot read {where}: {shown(str(e) or type(e).__name__)}") from None


def _set_aside(name: str) -> str | None:
    """Why an entry of a tree is never looked into, or None."""
    if name.lower() in _SYSTEM_NAMES or name.startswith("._"):
        return SKIP_SYSTEM
    if name.startswith("."):
        return SKIP_HIDDEN
    return None


@dataclass
class _Listing:
    """What a tree holds: the image files per split and class, and what was skipped."""

    members: dict[str, dict[str, list[str]]]  # split -> class -> relative paths (sorted)
    skipped: Counter = field(default_factory=Counter)
    stamps: list[str] = field(default_factory=list)  # one line per entry, for the fingerprint


def _list_tree(tree: _DirTree | _ZipTree) -> _Listing:
    listing = _Listing({split: {} for split in SPLITS})
    budget = [MAX_ENTRIES]
    ancestors = frozenset({tree.ident}) if tree.ident else frozenset()
    root, prefix = _scan(tree, "", budget), ""
    kept = [n for n in root if _set_aside(n.name) is None]
    folders = [n for n in kept if n.kind == "dir"]
    if len(folders) == 1 and not {n.name for n in kept} & set(SPLITS):
        # One wrapper folder around train/ and test/, as zip tools and macOS Finder make.
        wrapper = folders[0]
        for n in root:
            if n is not wrapper:
                _skip(listing, _set_aside(n.name) or SKIP_OUTSIDE, n.name)
        prefix = wrapper.name + "/"
        ancestors = _enter(ancestors, wrapper, wrapper.name)
        root = _scan(tree, prefix, budget)
    for node in root:
        rel = prefix + node.name
        reason = _set_aside(node.name)
        if reason is None and node.name in SPLITS:
            if node.kind == "dir":
                _list_split(tree, listing, node.name, rel + "/", _enter(ancestors, node, rel), budget)
                continue
            if node.kind != "file":
                raise LongtailError(f"{shown(rel)} is a {node.kind}")
        _skip(listing, reason or SKIP_OUTSIDE, rel)
    for classes in listing.members.values():
        for members in classes.values():
            members.sort()
    return listing


def _list_split(tree, listing: _Listing, split: str, rel_dir: str, ancestors: frozenset, budget: list[int]) -> None:
    for node in _scan(tree, rel_dir, budget):
        rel = rel_dir + node.name
        reason = _set_aside(node.name)
        if reason:
            _skip(listing, reason, rel)
        elif node.kind == "dir":
            if not node.name.isprintable():
                raise LongtailError(f"class folder {shown(rel)} has a name that is not printable text "
                                    "(control characters or bytes that are not UTF-8); rename it")
            members = listing.members[split].setdefault(node.name, [])
            _list_class(tree, listing, members, rel + "/", _enter(ancestors, node, rel), budget)
        elif node.kind == "file":
            _skip(listing, SKIP_NO_CLASS, rel)
        else:
            raise LongtailError(f"{shown(rel)} is a {node.kind}")


def _list_class(tree, listing: _Listing, members: list[str], rel_dir: str, ancestors: frozenset,
                budget: list[int]) -> None:
    # Sub-folders of a class belong to it, as in ImageFolder. Iterative, so a deep tree cannot
    # exhaust Python's recursion limit.
    stack = [(rel_dir, ancestors)]
    while stack:
        rel_dir, ancestors = stack.pop()
        for node in _scan(tree, rel_dir, budget):
            rel = rel_dir + node.name
            reason = _set_aside(node.name)
            if reason:
                _skip(listing, reason, rel)
            elif node.kind == "dir":
                stack.append((rel + "/", _enter(ancestors, node, rel)))
            elif os.path.splitext(node.name)[1].lower() not in IMAGE_SUFFIXES:
                _skip(listing, SKIP_NOT_IMAGE, rel)
            elif node.kind != "file":
                raise LongtailError(f"{shown(rel)} is a {node.kind}")
            elif node.size > MAX_MEMBER_BYTES:
                raise LongtailError(f"{shown(rel)} is {node.size} bytes, too large for an image member "
                                    f"(limit {MAX_MEMBER_BYTES})")
            else:
                members.append(rel)
                listing.stamps.append(f"{rel}\0{node.stamp}")


def _enter(ancestors: frozenset, folder: _Node, rel: str) -> frozenset:
    """The folders above ``folder``'s contents; refuses a folder that is one of its own ancestors."""
    if folder.ident is None:  # zip folders cannot loop
        return ancestors
    if folder.ident in ancestors:
        raise LongtailError(f"{shown(rel)} is a symbolic link loop: it leads back to a folder that contains it")
    return ancestors | {folder.ident}


def _scan(tree, rel: str, budget: list[int]) -> list[_Node]:
    nodes = tree.scan(rel)
    budget[0] -= len(nodes)
    if budget[0] < 0:
        raise LongtailError(f"{tree.where} holds more than {MAX_ENTRIES} files and folders; "
                            "is a link pointing into a large folder?")
    return sorted(nodes, key=lambda n: n.name)


def _skip(listing: _Listing, reason: str, rel: str) -> None:
    listing.skipped[reason] += 1
    listing.stamps.append(f"{rel}\0skipped")


def _read_folder_tree(tree: _DirTree | _ZipTree, listing: _Listing) -> ImageDataset:
    splits, where = listing.members, tree.where
    for split in SPLITS:
        if not splits[split]:
            raise LongtailError(f"{where} has no {split}/<class>/ folders (expected train/<class>/* and test/<class>/*)")
    classes = sorted(splits["train"])
    if len(classes) < 2:
        raise LongtailError(f"{where} has only one class ({shown(classes[0])}); at least 2 are needed")
    extra = sorted(set(splits["test"]) - set(classes))
    if extra:
        raise LongtailError(f"test/ has classes that train/ lacks: {', '.join(map(shown, extra))}")
    for split in SPLITS:
        for cls, members in sorted(splits[split].items()):
            if not members:
                raise LongtailError(f"class folder {split}/{shown(cls)} is empty (no "
                                    f"{', '.join(sorted(IMAGE_SUFFIXES))} files)")
    plan = {split: [(rel, j) for j, cls in enumerate(classes) for rel in splits[split].get(cls, [])]
            for split in SPLITS}
    images = _decode_all(tree, plan)
    labels = {split: torch.tensor([j for _, j in plan[split]], dtype=torch.int64) for split in SPLITS}
    return ImageDataset(where, classes, images["train"], labels["train"], images["test"], labels["test"], "",
                        dict(sorted(listing.skipped.items())))


def _decode_all(tree, plan: dict[str, list[tuple[str, int]]]) -> dict[str, torch.Tensor]:
    """Decode every planned image straight into one preallocated tensor per split."""
    first: Probe | None = None
    out: dict[str, torch.Tensor] = {}
    all_gray = True
    with quiet_native_stderr():
        for split in SPLITS:
            for i, (rel, _) in enumerate(plan[split]):
                data = tree.read(rel)
                p = probe(rel, data)
                if first is None:
                    first = p
                    if min(p.width, p.height) < MIN_IMAGE_SIDE:
                        raise LongtailError(f"{shown(rel)} is {p.width}x{p.height} px; images must be at least "
                                            f"{MIN_IMAGE_SIDE} px")
                    out = _allocate({s: len(plan[s]) for s in SPLITS}, p)
                elif (p.width, p.height) != (first.width, first.height):
                    raise LongtailError(
                        f"{shown(rel)} is {p.width}x{p.height} px but earlier images are {first.width}x{first.height}; "
                        "all images of a dataset must have one size")
                out[split][i].copy_(decode(rel, data, p))  # a grey image fills all three channels
                all_gray &= p.gray
    # RGB unless every image is greyscale: one channel count for the whole dataset.
    return {s: t[:, :1].clone() for s, t in out.items()} if all_gray else out


def _allocate(counts: dict[str, int], p: Probe) -> dict[str, torch.Tensor]:
    need = sum(counts.values()) * 3 * p.height * p.width
    limit = _memory_bytes()
    if need > limit // 2:
        raise LongtailError(f"{sum(counts.values())} images of {p.width}x{p.height} px need {need / 2**30:.1f} GiB "
                            f"decoded, more than half of the {limit / 2**30:.1f} GiB of memory here")
    try:
        return {s: torch.empty((n, 3, p.height, p.width), dtype=torch.uint8) for s, n in counts.items()}
    except (RuntimeError, MemoryError):
        raise LongtailError(f"could not allocate {need / 2**30:.1f} GiB for {sum(counts.values())} images of "
                            f"{p.width}x{p.height} px") from None


def _memory_bytes() -> int:
    """The memory this process may use: physical memory, or less under a cgroup or rlimit."""
    limits = [os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
    for cgroup_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limits.append(int(Path(cgroup_file).read_text().strip()))
        except (OSError, ValueError):
            pass
    return min(limits)


# --- official CIFAR-10 ---------------------------------------------------------------------------

# The official tensors do not depend on the image-folder rules, so their cache keeps its own
# format and file name (report/puzzles.py looks for that name).
OFFICIAL_CACHE_FORMAT = 1


def _load_official_cifar10(cache_dir: Path) -> ImageDataset:
    from torchvision.datasets import CIFAR10

    fingerprint = "cifar10-official-" + CIFAR10.tgz_md5
    cache_file = cache_dir / "decoded" / f"{fingerprint}.pt"
    ds = _read_cache(cache_file, "cifar10", fingerprint, OFFICIAL_CACHE_FORMAT)
    if ds is not None:
        return ds
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
    _write_cache(cache_file, ds, OFFICIAL_CACHE_FORMAT)
    return ds
