"""Where pixels come from: the official CIFAR-10, an image-folder tree (a directory or a zip), or
file lists.

Every source ends as one :class:`ImageDataset`: uint8 tensors of shape (N, C, H, W) and int64
labels. Images are decoded once into the decoded cache (cache.py: one raw file, memory-mapped,
so a dataset may be larger than memory), keyed by a fingerprint of the source and of the load
options that change pixels or splits (options.py); the second load maps that file.

Layouts (the first that fits, after unwrapping one wrapper folder as macOS Finder and other zip
tools make):

- ``train/<class>/...`` and ``test/<class>/...``;
- ``train/<class>/...`` alone, or ``<class>/...`` folders, with ``--test-fraction F``: a
  stratified fraction of every class, drawn with ``--split-seed``, becomes the test split;
- ``--data list:TRAIN.txt[,TEST.txt][,classes=NAMES.txt] --root DIR`` (filelist.py).

Folder classes are indexed in sorted class-name order; a file list's class j is label j. In a
tree, files are chosen by extension, as torchvision's ImageFolder does (plus .gif); everything
else is skipped and counted by reason in ``ImageDataset.skipped``. Every file or member is read
with a size cap, whatever it claims to be, and every image's dimensions are checked before it
is decoded (see images.py, which also states the colour rule). Images of several sizes are
refused unless ``--image-size`` gives the one to resize them to as they are decoded (resize.py).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from longtail.data import filelist
from longtail.data.cache import Decoded, ImageWriter, open_writer, read_entry
from longtail.data.images import MAX_IMAGE_PIXELS, Probe, decode, probe, quiet_native_stderr, shown
from longtail.data.options import LoadOptions
from longtail.data.resize import resize_image
from longtail.data.split import test_holdout
from longtail.errors import LongtailError

__all__ = ["ImageDataset", "data_home", "dataset_for", "load_dataset", "MAX_IMAGE_PIXELS"]

MIN_IMAGE_SIDE = 16
# A 32x32 JPEG is ~1 KB; anything above this is not a small-image dataset member and could be a
# decompression bomb, so it is refused before decoding (and reading stops at this many bytes).
MAX_MEMBER_BYTES = 16 * 1024 * 1024
_READ_STEP = 1024 * 1024
# Files and folders looked at in one tree; ImageNet has 1.3 million. More means a link into a big
# folder or a hostile archive, and listing it would take long before any error could be given.
MAX_ENTRIES = 5_000_000
# A file list of ImageNet's 1.3 million lines is about 50 MB.
MAX_LIST_BYTES = 512 * 1024 * 1024
# torchvision's ImageFolder extensions, plus .gif (which the loader has always read).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
# Bumped whenever what a source decodes to, or how the cache stores it, can change (2: files
# chosen by extension, skip counts, colour rule; 3: memory-mapped raw file + JSON header); it is
# part of the cache file's name, so an older cache is never read.
CACHE_FORMAT = 3
SPLITS = ("train", "test")

# Why a file was not read, as kept in ImageDataset.skipped.
SKIP_SYSTEM = "system file"  # macOS and Windows bookkeeping: __MACOSX/, ._*, .DS_Store, Thumbs.db
SKIP_HIDDEN = "hidden"  # other names starting with "."
SKIP_NOT_IMAGE = "not an image"  # an extension ImageFolder would not read
SKIP_OUTSIDE = "outside train/ and test/"
SKIP_NO_CLASS = "not in a class folder"  # a file directly in train/ or test/ (or the root of class folders)
_SYSTEM_NAMES = {"__macosx", ".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r", ".spotlight-v100",
                 ".trashes", ".fseventsd", "$recycle.bin"}
# Zip compression methods by number, for messages; only stored and deflate members are read.
_ZIP_METHODS = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "XZ", 97: "WavPack", 98: "PPMd",
                99: "AES-encrypted"}
# How the test split came about, for ``data info``.
LAYOUT_SPLIT = "train/<class>/ and test/<class>/"
LAYOUT_TRAIN_ONLY = "train/<class>/, test held out by --test-fraction"
LAYOUT_FLAT = "<class>/ folders, test held out by --test-fraction"
LAYOUT_LISTS = "file lists"
LAYOUT_LIST_ONLY = "a training file list, test held out by --test-fraction"
LAYOUT_OFFICIAL = "official CIFAR-10 batches"


@dataclass(frozen=True)
class ImageDataset:
    """A whole dataset: train and test splits as uint8 NCHW tensors (views of one memory-mapped
    file when it came from the decoded cache)."""

    name: str
    classes: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    fingerprint: str
    # Files of the tree that were not read, reason -> count (see SKIP_*); empty for CIFAR-10.
    skipped: dict[str, int] = field(default_factory=dict, hash=False)
    layout: str = ""  # one of LAYOUT_*
    # How it was loaded (size at decode, test hold-out): a run reuses a dataset only with its own.
    options: LoadOptions = field(default_factory=LoadOptions)

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


def dataset_for(settings: Any, given: ImageDataset | None = None, *, download: bool = True) -> ImageDataset:
    """The dataset run settings (or a run's config.json dict) name: ``given`` (a study's, loaded
    once for all its runs) when it was loaded with the same options, else loaded here. With
    ``download=False`` the official CIFAR-10 must already be on this machine (the report's case)."""
    options = LoadOptions.of(settings)
    if given is not None and given.options == options:
        return given
    data = settings.get("data") if isinstance(settings, dict) else settings.data
    return _load(data, None, options, download)


def load_dataset(spec: str, cache_dir: Path | None = None, *, image_size: Any = None, resize: str | None = None,
                 test_fraction: float | None = None, split_seed: int = 0, root: str | None = None) -> ImageDataset:
    """Load ``cifar10`` (official, downloaded and verified), an image-folder path (dir or .zip), or
    ``list:TRAIN.txt[,TEST.txt][,classes=NAMES.txt]``; the options are those of options.py."""
    return _load(spec, cache_dir, LoadOptions.create(image_size, resize, test_fraction, split_seed, root))


def _load(spec: str, cache_dir: Path | None, options: LoadOptions, download: bool = True) -> ImageDataset:
    cache_dir = Path(cache_dir) if cache_dir is not None else data_home()
    hint = "give an image folder, a .zip, list:TRAIN.txt[,TEST.txt] or 'cifar10'"
    if not isinstance(spec, str) or not spec.strip():
        # An empty path would mean the current folder, which is never what was meant.
        raise LongtailError(f"the data path is empty ({hint})")
    if spec.lower() in {"cifar10", "cifar-10"}:
        _refuse_options(options, "CIFAR-10", has_test=True)
        return _load_official_cifar10(cache_dir, options, download)
    if "\0" in spec:
        raise LongtailError(f"the data path {shown(spec)} contains a NUL character")
    if filelist.is_list_spec(spec):
        return _load_file_lists(spec, cache_dir, options)
    _refuse_options(options, shown(spec), has_test=None)
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
        return _cached(path.name, cache_dir, _listing_fingerprint(listing), options,
                       lambda stem: _read_folder_tree(tree, listing, options, stem))
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

        def decode_zip(stem: Path) -> Decoded:
            tree = _ZipTree(path, f)
            return _read_folder_tree(tree, _list_tree(tree), options, stem)

        return _cached(path.name, cache_dir, fingerprint, options, decode_zip)


def _refuse_options(options: LoadOptions, what: str, has_test: bool | None) -> None:
    """Options that make no sense for this source: --root off file lists, --test-fraction with a
    test split of its own (for trees this is known only after listing)."""
    if options.root is not None:
        raise LongtailError(f"--root is for file lists (--data list:TRAIN.txt[,TEST.txt]); {what} is not one")
    if has_test and options.test_fraction is not None:
        raise LongtailError(f"{what} has its own test split; --test-fraction is for data without one")


# --- caching -------------------------------------------------------------------------------------


def _fingerprint(source: str, options: LoadOptions) -> str:
    """The source's fingerprint, or for a resized or re-split load one of source and options."""
    key = options.key()
    return source if not key else hashlib.sha256(f"{source}\0{key}".encode()).hexdigest()


def _stem(cache_dir: Path, source: str, options: LoadOptions, fmt: int) -> Path:
    return cache_dir / "decoded" / f"{_fingerprint(source, options)}.v{fmt}"


def _cached(name: str, cache_dir: Path, source: str, options: LoadOptions,
            decode_source: Callable[[Path], Decoded], fmt: int | None = None) -> ImageDataset:
    """The dataset from the cache entry of (source, options), decoded into it first if need be."""
    fmt = CACHE_FORMAT if fmt is None else fmt
    stem = _stem(cache_dir, source, options, fmt)
    decoded = read_entry(stem, fmt)
    if decoded is None:
        decoded = decode_source(stem)
    h = decoded.header
    return ImageDataset(shown(name), list(h["classes"]), decoded.train_images, decoded.train_labels,
                        decoded.test_images, decoded.test_labels, _fingerprint(source, options),
                        dict(h.get("skipped", {})), h.get("layout", ""), options)


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
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError, RuntimeError,
                OverflowError, KeyError) as e:
            # zlib.error: a deflate stream damaged inside (bad block lengths, codes), not at its CRC
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
    flat: bool = False  # <class>/ folders at the root (listed as the train split), not train/ and test/


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
    if not {n.name for n in root if _set_aside(n.name) is None} & set(SPLITS):
        # No train/ or test/: every folder is a class (a test split comes from --test-fraction).
        listing.flat = True
        _list_split(tree, listing, "train", prefix, ancestors, budget)
    for node in root if not listing.flat else []:
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


def _read_folder_tree(tree: _DirTree | _ZipTree, listing: _Listing, options: LoadOptions, stem: Path) -> Decoded:
    splits, where = listing.members, tree.where
    expected = ("expected train/<class>/* and test/<class>/*, or train/<class>/* or <class>/* with "
                "--test-fraction F")
    if not splits["train"]:
        other = " and no class folders" if listing.flat else ""
        raise LongtailError(f"{where} has no train/<class>/ folders{other} ({expected})")
    has_test = bool(splits["test"])
    if has_test and options.test_fraction is not None:
        raise LongtailError(f"{where} has its own test/ split; --test-fraction is for data without one")
    if not has_test and options.test_fraction is None:
        what = "holds <class>/ folders but no test split" if listing.flat else "has no test/<class>/ folders"
        raise LongtailError(f"{where} {what}; give --test-fraction F to hold out a fraction F of every class as the "
                            "test split (drawn with --split-seed)")
    classes = sorted(splits["train"])
    if len(classes) < 2:
        raise LongtailError(f"{where} has only one class ({shown(classes[0])}); at least 2 are needed")
    extra = sorted(set(splits["test"]) - set(classes))
    if extra:
        raise LongtailError(f"test/ has classes that train/ lacks: {', '.join(map(shown, extra))}")
    for split in SPLITS:
        for cls, members in sorted(splits[split].items()):
            if not members:
                folder = shown(cls) if listing.flat else f"{split}/{shown(cls)}"
                raise LongtailError(f"class folder {folder} is empty (no {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    plan = {split: [(rel, j) for j, cls in enumerate(classes) for rel in splits[split].get(cls, [])]
            for split in SPLITS}
    layout = LAYOUT_SPLIT
    if options.test_fraction is not None:
        plan = _hold_out(plan["train"], classes, options)
        layout = LAYOUT_FLAT if listing.flat else LAYOUT_TRAIN_ONLY
    header = {"classes": classes, "skipped": dict(sorted(listing.skipped.items())), "layout": layout}
    return _decode_all(tree.read, plan, options, stem, header)


def _hold_out(pool: list[tuple[str, int]], classes: list[str], options: LoadOptions) -> dict[str, list[tuple[str, int]]]:
    """The plan of a source without a test split: --test-fraction of every class held out."""
    labels = torch.tensor([j for _, j in pool], dtype=torch.int64)
    train, test = test_holdout(labels, options.test_fraction, classes, options.split_seed)
    return {"train": [pool[i] for i in train.tolist()], "test": [pool[i] for i in test.tolist()]}


def _decode_all(read: Callable[[str], bytes], plan: dict[str, list[tuple[str, int]]], options: LoadOptions,
                stem: Path, header: dict) -> Decoded:
    """Decode every planned image (training, then test) straight into the cache entry ``stem``:
    each one is probed, decoded, resized if asked, written, and dropped before the next."""
    count = sum(len(plan[s]) for s in SPLITS)
    fmt = CACHE_FORMAT
    writer: ImageWriter | None = open_writer(stem, fmt, count, *options.size) if options.size else None
    first: Probe | None = None
    try:
        with quiet_native_stderr():
            for split in SPLITS:
                for rel, _ in plan[split]:
                    data = read(rel)
                    p = probe(rel, data)
                    if options.size is None:
                        if first is None:
                            first = p
                            if min(p.width, p.height) < MIN_IMAGE_SIDE:
                                raise LongtailError(f"{shown(rel)} is {p.width}x{p.height} px; images must be at least "
                                                    f"{MIN_IMAGE_SIDE} px")
                            writer = open_writer(stem, fmt, count, p.height, p.width)
                        elif (p.width, p.height) != (first.width, first.height):
                            raise LongtailError(
                                f"{shown(rel)} is {p.width}x{p.height} px but earlier images are "
                                f"{first.width}x{first.height}; all images of a dataset must have one size, or give "
                                "--image-size N (or HxW) to resize them as they are decoded")
                    img = decode(rel, data, p)  # a grey image is written to all three channels
                    assert writer is not None
                    writer.add(resize_image(img, options.size, options.resize) if options.size else img)
        # RGB unless every image is greyscale: one channel count for the whole dataset.
        return writer.finish([j for _, j in plan["train"]], [j for _, j in plan["test"]], header)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


# --- file lists ----------------------------------------------------------------------------------


def _load_file_lists(spec: str, cache_dir: Path, options: LoadOptions) -> ImageDataset:
    parts = filelist.parse_spec(spec)
    train_text, train_digest = _read_text(parts.train)
    train_where = shown(parts.train)
    train = filelist.parse_list(train_text, train_where)
    test = None
    stamps = [f"train\0{train_digest}"]
    if parts.test is not None:
        if options.test_fraction is not None:
            raise LongtailError(f"{shown(spec)} names a test list; --test-fraction is for data without one")
        test_text, test_digest = _read_text(parts.test)
        test = filelist.parse_list(test_text, shown(parts.test))
        stamps.append(f"test\0{test_digest}")
    elif options.test_fraction is None:
        raise LongtailError(f"{shown(spec)} names no test list; give list:TRAIN.txt,TEST.txt, or --test-fraction F to "
                            "hold out a fraction F of every class as the test split (drawn with --split-seed)")
    names = None
    if parts.classes is not None:
        classes_text, classes_digest = _read_text(parts.classes)
        names = filelist.parse_classes(classes_text, shown(parts.classes))
        stamps.append(f"classes\0{classes_digest}")
    classes = filelist.check_labels(train, test, names, train_where, shown(parts.test or ""))
    root = Path(options.root).expanduser() if options.root is not None else Path(parts.train).expanduser().parent
    try:
        root_st = os.stat(root)
    except OSError as e:
        raise LongtailError(f"the file lists' root {shown(str(root))} cannot be opened ({e.strerror})") from None
    if not stat.S_ISDIR(root_st.st_mode):
        raise LongtailError(f"the file lists' root {shown(str(root))} is not a folder (give --root DIR)")
    for entries, where in ((train, train_where), (test or [], shown(parts.test or ""))):
        stamps.extend(_stat_listed(root, entries, where))
    source = hashlib.sha256("\n".join(stamps).encode("utf-8", "surrogateescape")).hexdigest()

    def decode_lists(stem: Path) -> Decoded:
        plan = {"train": [(e.path, e.label) for e in train], "test": [(e.path, e.label) for e in test or []]}
        layout = LAYOUT_LISTS
        if test is None:
            plan = _hold_out(plan["train"], classes, options)
            layout = LAYOUT_LIST_ONLY
        tree = _DirTree(root, root_st)
        return _decode_all(tree.read, plan, options, stem, {"classes": classes, "skipped": {}, "layout": layout})

    return _cached(Path(parts.train).name, cache_dir, source, options, decode_lists)


def _read_text(name: str) -> tuple[str, str]:
    """A list or classes file's text (UTF-8) and a digest of its bytes."""
    with _open_regular(Path(name).expanduser(), name) as f:
        try:
            data = f.read(MAX_LIST_BYTES + 1)
        except OSError as e:
            raise LongtailError(f"cannot read {shown(name)}: {e.strerror}") from None
    if len(data) > MAX_LIST_BYTES:
        raise LongtailError(f"{shown(name)} is more than {MAX_LIST_BYTES} bytes, too large for a file list")
    try:
        return data.decode("utf-8"), hashlib.sha256(data).hexdigest()
    except UnicodeDecodeError:
        raise LongtailError(f"{shown(name)} is not UTF-8 text") from None


def _stat_listed(root: Path, entries: list[filelist.Entry], where: str) -> list[str]:
    """Check every listed file is there (a line number for the first that is not); one stamp
    line each, which changes whenever the file does."""
    if len(entries) > MAX_ENTRIES:
        raise LongtailError(f"{where} lists more than {MAX_ENTRIES} images")
    stamps = []
    for e in entries:
        try:
            st = os.stat(root / e.path)
        except FileNotFoundError:
            raise LongtailError(f"{where} line {e.line}: {shown(e.path)} not found in {shown(str(root))}") from None
        except OSError as err:
            what = "is a symbolic link loop" if err.errno == errno.ELOOP else f"cannot be opened ({err.strerror})"
            raise LongtailError(f"{where} line {e.line}: {shown(e.path)} {what}") from None
        if not stat.S_ISREG(st.st_mode):
            raise LongtailError(f"{where} line {e.line}: {shown(e.path)} is a {_file_kind(st.st_mode)}, not an image file")
        if st.st_size > MAX_MEMBER_BYTES:
            raise LongtailError(f"{where} line {e.line}: {shown(e.path)} is {st.st_size} bytes, too large for an image "
                                f"(limit {MAX_MEMBER_BYTES})")
        stamps.append(f"{e.path}\0{e.label}\0{st.st_size}:{st.st_mtime_ns}")
    return stamps


# --- official CIFAR-10 ---------------------------------------------------------------------------

# The official tensors do not depend on the image-folder rules, so their cache keeps its own
# format and file name (report/puzzles.py looks for that name). 2: memory-mapped raw file.
OFFICIAL_CACHE_FORMAT = 2


def _load_official_cifar10(cache_dir: Path, options: LoadOptions, download: bool = True) -> ImageDataset:
    from torchvision.datasets import CIFAR10

    source = "cifar10-official-" + CIFAR10.tgz_md5

    def download_and_write(stem: Path) -> Decoded:
        root = cache_dir / "cifar10"
        if not download and not (root / CIFAR10.base_folder).is_dir():
            raise LongtailError(f"CIFAR-10 is not on this machine (looked in {cache_dir}); nothing is downloaded here")
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
        size = options.size or (32, 32)
        writer = open_writer(stem, OFFICIAL_CACHE_FORMAT, len(train.data) + len(test.data), *size)
        try:
            for split in (train, test):
                for start in range(0, len(split.data), 1000):
                    block = torch.from_numpy(split.data[start:start + 1000]).permute(0, 3, 1, 2)
                    if options.size:
                        for img in block:
                            writer.add(resize_image(img, options.size, options.resize))
                    else:
                        writer.add_batch(block)
            header = {"classes": list(train.classes), "skipped": {}, "layout": LAYOUT_OFFICIAL}
            return writer.finish(list(train.targets), list(test.targets), header)
        except BaseException:
            writer.abort()
            raise

    ds = _cached("cifar10", cache_dir, source, options, download_and_write, OFFICIAL_CACHE_FORMAT)
    return ds
