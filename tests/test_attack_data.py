"""An attack on the data path through the CLI (`longtail data info --data PATH`): hostile archives,
image files and folder trees. Every case must end with exit code 2 and exactly one line on stderr
starting `longtail: error:` (or exit 0 and an empty stderr where the input is legitimately fine),
no traceback, bounded memory, and the input left exactly as it was.

Cases by kind (CASES below, each one CLI run): archives 30 (25 refused, 5 load), image files 54
(33 refused, 21 load), folder trees 27 (21 refused, 6 load) = 111, of which 20 are bombs with a
memory check; plus the legitimate at-the-cap dataset, 2 runs of `python -m longtail` itself (FIFO,
PNG bomb under RLIMIT_AS: the forked runs match them), 3 in-process cases that simulate unreadable files (tests
run as root, so chmod cannot), and 3 hypothesis fuzzers (zip bytes, image bytes in 11 formats and
modes, member names; 40 examples each, LONGTAIL_FUZZ_EXAMPLES to change) asserting "an
ImageDataset or a LongtailError with a one-line message, never another exception". The fuzzers
found that torchvision's decode_png segfaults on damaged PNG pixel data; see images.py.

Memory: every CLI case runs in a child forked from one driver process that has already imported
longtail and torch (a fresh `python -m longtail` takes ~5 s to import torch here; a hundred of
them would not fit the time budget), under RLIMIT_AS = the driver's address space + 1.5 GiB, so a
regression fails the test instead of taking the machine down. Each bomb case (bomb=True) must keep
the child's peak RSS (os.wait4) within BOMB_RSS_SLACK = 200 MiB of a child that fails at once.
Largest measured: +33 MiB (a zip of 20000 members, listed) and +30 MiB (a zip member whose
central directory claims 16 MiB - 1 while it inflates to 64 MiB: reading stops at the declared
size, then the CRC refuses it), against the 200 MiB bound; a real 49 KiB PNG that decodes to
20000x20000 px: +13 MiB. The legitimate at-the-cap dataset (three 4096x4096 images, 144 MiB of
pixels) peaked at +238 MiB, within its bound of 144 + 200 MiB.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from longtail.data.sources import ImageDataset, load_dataset
from longtail.errors import LongtailError
from tests.conftest import make_image_folder

SRC = Path(__file__).resolve().parents[1] / "src"
MIB = 1024 * 1024
BOMB_RSS_SLACK = 200 * MIB
AS_HEADROOM = 1536 * MIB

# --- crafting ------------------------------------------------------------------------------------


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def rgb16(seed: int = 0, size: tuple[int, int] = (16, 16)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int, h: int) -> bytes:
    """A real, decodable 1-bit grey PNG of w x h zeros: ~1 KiB of file per 1 Mpixel."""
    comp = zlib.compressobj(9)
    row = b"\0" * (1 + (w + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_header_only(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def jpeg_sized(w: int, h: int, **kw) -> bytes:
    """A real 16x16 JPEG whose frame header (SOF0) is patched to declare w x h."""
    data = bytearray(encode(rgb16(), "JPEG", **kw))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, h, w)
    return bytes(data)


def gif(screen: tuple[int, int], frames: list[tuple[int, int]]) -> bytes:
    out = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    for fw, fh in frames:
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, fw, fh, 0) + b"\x02\x02\x44\x01\x00"
    return out + b"\x3b"


def bmp_header(w: int, h: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + info + b"\0" * 64


def webp_header(fourcc: bytes, w: int, h: int) -> bytes:
    if fourcc == b"VP8X":
        payload = bytes([0x10, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    elif fourcc == b"VP8L":
        payload = b"\x2f" + struct.pack("<I", (w - 1) | (h - 1) << 14) + b"\0" * 16
    else:
        payload = b"\x30\x01\x00\x9d\x01\x2a" + struct.pack("<HH", w, h) + b"\0" * 16
    chunk = fourcc + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def tiff(w: int, h: int, tile: int | None = None) -> bytes:
    entries = [(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 1), (277, 3, 1)]
    if tile:
        entries += [(322, 4, tile), (323, 4, tile), (324, 4, 200), (325, 4, 16)]
    else:
        entries += [(273, 4, 200), (278, 4, h), (279, 4, 256)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", t, k, 1, v) if k == 4 else struct.pack("<HHIHH", t, k, 1, v, 0) for t, k, v in sorted(entries))
    data = b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0\0\0\0"
    return data + b"\0" * (456 - len(data))


def png_interlaced(arr: np.ndarray) -> bytes:
    """An Adam7-interlaced RGB PNG (Pillow cannot write one), filter 0 on every row."""
    h, w, _ = arr.shape
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        sub = arr[y0::dy, x0::dx]
        if sub.size:
            raw += b"".join(b"\0" + row.tobytes() for row in sub)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1))
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def png_damaged(how: str) -> bytes:
    """A 16x16 RGB PNG whose pixel data libpng rejects after the header (torchvision's decode_png
    dies with SIGSEGV on each of these)."""
    rows = [b"\0" + bytes(range(i, i + 48)) for i in range(16)]
    raw = b"".join(rows)
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
    z = zlib.compress(raw)
    idat = {
        "crc": png_chunk(b"IDAT", z)[:-4] + b"\0\0\0\0",
        "filter": png_chunk(b"IDAT", zlib.compress(b"\x07" + raw[1:])),
        "short": png_chunk(b"IDAT", zlib.compress(raw[:-20])),
        "adler": png_chunk(b"IDAT", z[:-4] + b"\0\0\0\0"),
        "split": png_chunk(b"IDAT", z[:100]) + png_chunk(b"tEXt", b"a\0b") + png_chunk(b"IDAT", z[100:]),
    }[how]
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + png_chunk(b"IEND", b"")


def jpeg_many_scans(n: int) -> bytes:
    data = encode(rgb16(), "JPEG", progressive=True)
    sos = data.index(b"\xff\xda")
    return data[:-2] + data[sos:-2] * n + b"\xff\xd9"


def zip_of(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def zip_tree(folder: Path, path: Path, prefix: str = "", extra: dict[str, bytes] | None = None,
             compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, prefix + p.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def _central_entry(data: bytes | bytearray, name: bytes) -> int:
    pos = data.find(b"PK\x01\x02")
    while pos != -1:
        nlen = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46:pos + 46 + nlen] == name:
            return pos
        pos = data.find(b"PK\x01\x02", pos + 4)
    raise KeyError(name)


def patch_zip(path: Path, member: str, *, flags: int | None = None, method: int | None = None,
              size: int | None = None, local: bool = True, central: bool = True, name: bytes | None = None,
              offset_of: str | None = None) -> Path:
    """Rewrite fields of ``member``'s local header and/or central-directory entry in place."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        lh = z.getinfo(member).header_offset
        other = z.getinfo(offset_of).header_offset if offset_of else None
    cd = _central_entry(data, member.encode())
    heads = ([(lh, 6, 8, 22, 30)] if local else []) + ([(cd, 8, 10, 24, 46)] if central else [])
    for base, f_off, m_off, s_off, n_off in heads:
        if flags is not None:
            struct.pack_into("<H", data, base + f_off, flags)
        if method is not None:
            struct.pack_into("<H", data, base + m_off, method)
        if size is not None:
            struct.pack_into("<I", data, base + s_off, size)
        if name is not None:
            data[base + n_off:base + n_off + len(name)] = name
    if other is not None:
        struct.pack_into("<I", data, cd + 42, other)
    path.write_bytes(bytes(data))
    return path


def good_tree(root: Path, **kw) -> Path:
    kw = {"classes": 2, "per_class": 3, **kw}
    return make_image_folder(root, **kw)


def tree_with(root: Path, files: dict[str, bytes], **kw) -> Path:
    root = good_tree(root / "tree", **kw)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def img_case(rel_name: str, data: bytes) -> Callable[[Path], Path]:
    """A good tree with one extra image, decoded after the first images fixed the size."""
    return lambda t: tree_with(t, {f"train/class1/{rel_name}": data})


# --- the driver: one process imports torch once, each case runs in a forked child -------------------

DRIVER = r"""
import json, os, resource, signal, sys, traceback
from longtail.cli import main
import longtail.run, longtail.data.split, longtail.data.imbalance, longtail.data.sources  # what data info imports

def vm_bytes():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))

print(json.dumps({"vm": vm_bytes(), "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.environ.update(req["env"])
            for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            resource.setrlimit(resource.RLIMIT_AS, (req["as_limit"], req["as_limit"]))
            signal.alarm(req["timeout"])  # a hang ends the child with SIGALRM, which the test reports
            try:
                code = main(req["argv"])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
                code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    print(json.dumps({"code": os.waitstatus_to_exitcode(status), "rss": usage.ru_maxrss * 1024}), flush=True)
"""


@dataclass
class Result:
    code: int
    out: str
    err: str
    rss: int  # the child's peak resident set, bytes


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(SRC.parent)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


class Driver:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=_env(), text=True)
        hello = json.loads(self.proc.stdout.readline())
        self.vm, self.rss = hello["vm"], hello["rss"]
        self.tmp = Path(tempfile.mkdtemp(prefix="longtail-attack-"))
        self.baseline = self.run(["data", "info", "--data", str(self.tmp / "missing")], self.tmp / "cache").rss

    def run(self, argv: list[str], cache: Path, timeout: int = 60) -> Result:
        out, err = self.tmp / "out", self.tmp / "err"
        req = {"argv": argv, "env": {"LONGTAIL_DATA": str(cache)}, "stdout": str(out), "stderr": str(err),
               "as_limit": self.vm + AS_HEADROOM, "timeout": timeout}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        return Result(reply["code"], out.read_text(errors="replace"), err.read_text(errors="replace"), reply["rss"])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cli():
    driver = Driver()
    yield driver
    driver.close()


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything about a folder that a loader must not change: modes, sizes, times, bytes, link targets."""
    out = {".": tuple(os.lstat(root))[:1] + (os.lstat(root).st_mtime_ns,)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st_ = os.lstat(p)
            entry: tuple = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
            if stat.S_ISLNK(st_.st_mode):
                entry += (os.readlink(p),)
            elif stat.S_ISREG(st_.st_mode):
                with open(p, "rb") as f:
                    entry += (hashlib.sha256(f.read()).hexdigest(),)
            out[os.path.relpath(p, root)] = entry
    return out


# --- the catalogue -------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    kind: str  # archive, image, tree
    build: Callable[[Path], Path | str]  # writes the input under the given folder, returns --data
    expect: str | None  # words of the one-line error; None: loads (exit 0, nothing on stderr)
    bomb: bool = False  # peak memory is checked against BOMB_RSS_SLACK


def _fifo(t: Path, rel: str) -> Path:
    root = good_tree(t / "tree")
    os.mkfifo(root / rel)
    return root


def _socket(t: Path) -> Path:
    root = good_tree(t / "tree")
    here = os.getcwd()
    os.chdir(root / "train" / "class1")  # AF_UNIX paths are limited to ~100 bytes
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind("sock.png")
        s.close()
    finally:
        os.chdir(here)
    return root


def _link(t: Path, rel: str, target: str) -> Path:
    root = good_tree(t / "tree")
    os.symlink(target, root / rel)
    return root


def _finder_zip(t: Path) -> Path:
    tree = good_tree(t / "src")
    extra = {"__MACOSX/data/._train": b"\0\x05\x16\x07" + b"\0" * 60, "__MACOSX/data/train/class0/._0000.png": b"junk",
             "data/.DS_Store": b"\0\0\0\1Bud1", "data/train/.DS_Store": b"Bud1", "data/train/class0/._0001.png": b"x",
             "data/Thumbs.db": b"x"}
    path = zip_tree(tree, t / "Archive.zip", prefix="data/", extra=extra)
    shutil.rmtree(tree)
    return path


def _zipped(build_tree: Callable[[Path], Path], name="d.zip", **kw) -> Callable[[Path], Path]:
    def build(t: Path) -> Path:
        tree = build_tree(t / "src")
        path = zip_tree(tree, t / name, **kw)
        shutil.rmtree(t / "src")
        return path
    return build


def _good_zip_plus(members: dict[str, bytes], **kw) -> Callable[[Path], Path]:
    return _zipped(lambda t: good_tree(t), extra=members, **kw)


def _zip_lying(declared: int) -> Callable[[Path], Path]:
    """A member whose central directory says ``declared`` bytes; it inflates to 64 MiB."""
    def build(t: Path) -> Path:
        path = _good_zip_plus({"train/class1/liar.png": png_header_only(16, 16) + b"\0" * (64 * MIB)})(t)
        return patch_zip(path, "train/class1/liar.png", size=declared)
    return build


def _patched(member: str, data: bytes, compression: int = zipfile.ZIP_DEFLATED, **patch) -> Callable[[Path], Path]:
    def build(t: Path) -> Path:
        path = _good_zip_plus({member: data}, compression=compression)(t)
        return patch_zip(path, member, **patch)
    return build


def _zip_symlink(t: Path) -> Path:
    path = _good_zip_plus({})(t)
    info = zipfile.ZipInfo("train/class1/link.png")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(info, "../../../etc/passwd")
    return path


def _zip_truncated_cd(t: Path) -> Path:
    path = _good_zip_plus({})(t)
    data = path.read_bytes()
    cd = data.find(b"PK\x01\x02")
    path.write_bytes(data[:cd + 20] + data[cd + 60:])  # a hole in the central directory, EOCD intact
    return path


def _zip_corrupt_data(t: Path) -> Path:
    path = _good_zip_plus({"train/class1/zz.png": encode(rgb16(1), "PNG")}, compression=zipfile.ZIP_DEFLATED)(t)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        off = z.getinfo("train/class1/zz.png").header_offset + 30 + len("train/class1/zz.png") + 40
    data[off:off + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    return path


def _zip_overlap(t: Path) -> Path:
    path = _good_zip_plus({"train/class1/aa.png": encode(rgb16(1), "PNG"),
                           "train/class1/bb.png": encode(rgb16(2), "PNG")})(t)
    return patch_zip(path, "train/class1/bb.png", local=False, central=False, offset_of="train/class1/aa.png")


def _zip_cp437(t: Path) -> Path:
    path = _good_zip_plus({"train/caf?/a.png": encode(rgb16(), "PNG"), "test/caf?/a.png": encode(rgb16(), "PNG")})(t)
    patch_zip(path, "train/caf?/a.png", name=b"train/caf\xe9")
    return patch_zip(path, "test/caf?/a.png", name=b"test/caf\xe9")


def _zip_prefixed(t: Path) -> Path:
    path = _good_zip_plus({})(t)
    path.write_bytes(b"#!/bin/sh\necho self-extracting stub\nexit 0\n" + path.read_bytes())
    return path


def _zip_many_members(t: Path) -> Path:
    path = _good_zip_plus({})(t)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as z:
        for i in range(20000):
            z.writestr(f"train/class0/notes/{i:05d}.txt", b"")
    return path


def _tree_only(split: str) -> Callable[[Path], Path]:
    def build(t: Path) -> Path:
        root = good_tree(t / "tree")
        shutil.rmtree(root / ("test" if split == "train" else "train"))
        return root
    return build


def _symlinked_class(t: Path) -> Path:
    root = good_tree(t / "tree")
    elsewhere = make_image_folder(t / "elsewhere", classes=1, per_class=3, class_names=["linked"], seed=5)
    os.symlink(elsewhere / "train" / "linked", root / "train" / "linked")
    os.symlink(elsewhere / "test" / "linked", root / "test" / "linked")
    return root


def _symlinked_split(t: Path) -> Path:
    real = good_tree(t / "real")
    root = t / "tree"
    root.mkdir()
    os.symlink(real / "train", root / "train")
    os.symlink(real / "test", root / "test")
    return root


def _junk_everywhere(t: Path) -> Path:
    root = tree_with(t, {"README.txt": b"hello", ".DS_Store": b"Bud1", "train/Thumbs.db": b"x",
                         "train/class0/._0000.png": b"\0\x05\x16\x07AppleDouble", "train/class0/notes.csv": b"a,b",
                         "train/class1/.hidden/x.png": b"not even an image", "test/class0/desktop.ini": b"[x]",
                         "train/labels.json": b"{}", "LICENSE": b"MIT"})
    os.symlink("nowhere", root / "train" / "class0" / "dangling.txt")  # not an image: skipped, no error
    return root


def _name_bytes(t: Path, rel: bytes, what: str) -> Path:
    root = good_tree(t / "tree")
    base = os.fsencode(root)
    if what == "class":
        os.rename(base + b"/train/class1", base + b"/" + rel)
        os.rename(base + b"/test/class1", base + b"/" + rel.replace(b"train/", b"test/"))
    else:
        os.rename(base + b"/train/class1/0000.png", base + b"/" + rel)
    return root


def _deep_tree(t: Path) -> Path:
    root = good_tree(t / "tree")
    deep = root / "train" / "class1" / "/".join(["d"] * 150)
    deep.mkdir(parents=True)
    shutil.copy(root / "train" / "class1" / "0000.png", deep / "x.png")
    return root


def _wrapped_dir(t: Path) -> Path:
    good_tree(t / "outer" / "my dataset")
    (t / "outer" / ".DS_Store").write_bytes(b"Bud1")
    return t / "outer"


def _link_loop_path(t: Path) -> Path:
    os.symlink(t / "b", t / "a")
    os.symlink(t / "a", t / "b")
    return t / "a"


def _at_cap(t: Path) -> Path:
    root = t / "tree"
    big = png_bomb(4096, 4096)
    for rel in ("train/a/x.png", "train/b/x.png", "test/a/x.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(big)
    return root


def _plain(t: Path, rel: str, data: bytes) -> Path:
    (t / rel).write_bytes(data)
    return t / rel


# A real 16x16 GIF, then 20000 frame headers of 4000x4000 each (15 bytes apiece): decoding every
# frame, as torchvision's decode_gif does, would ask for 320 GB.
GIF_FIRST_SMALL_THEN_HUGE = (encode(rgb16().convert("P"), "GIF")[:-1]
                             + (b"\x2c" + struct.pack("<HHHHB", 0, 0, 4000, 4000, 0) + b"\x02\x02\x44\x01\x00") * 20000
                             + b"\x3b")
APNG = encode(rgb16(), "PNG", save_all=True, append_images=[rgb16(3)], duration=50)

ARCHIVES = [
    Case("zip slip ../", "archive", lambda t: zip_of(t / "d.zip", {"train/a/../../../evil.png": b"x"}), "unsafe member"),
    Case("absolute member name", "archive", lambda t: zip_of(t / "d.zip", {"/etc/train/a/x.png": b"x"}), "unsafe member"),
    Case("drive letter member name", "archive", lambda t: zip_of(t / "d.zip", {"C:/train/a/x.png": b"x"}),
         "unsafe member"),
    Case("backslash member name", "archive", lambda t: zip_of(t / "d.zip", {"train\\a\\..\\..\\x.png": b"x"}),
         "unsafe member"),
    Case("central directory lies small (64 MiB inflates)", "archive", _zip_lying(1000), "liar.png", bomb=True),
    Case("central directory lies just under the cap", "archive", _zip_lying(16 * MIB - 1), "liar.png", bomb=True),
    Case("local header lies, central directory honest", "archive",
         lambda t: patch_zip(_good_zip_plus({"train/class1/big.png": b"\0" * (17 * MIB)})(t), "train/class1/big.png",
                             size=100, central=False), "too large", bomb=True),
    Case("member declared above the cap", "archive",
         lambda t: _good_zip_plus({"train/class1/big.png": b"\0" * (17 * MIB)})(t), "too large", bomb=True),
    Case("nested zip in a class folder is skipped", "archive",
         lambda t: _good_zip_plus({"train/class0/inner.zip": zip_of(t / "inner.zip", {"a": b"b"}).read_bytes()})(t),
         None),
    Case("zip disguised as png", "archive",
         lambda t: _good_zip_plus({"train/class1/zz.png": zip_of(t / "inner.zip", {"a": b"b"}).read_bytes()})(t),
         "zz.png"),
    Case("20000 members", "archive", _zip_many_members, None, bomb=True),
    Case("duplicate member names", "archive", lambda t: patch_zip(
        _good_zip_plus({"train/class1/aa.png": b"1", "train/class1/ab.png": b"2"})(t), "train/class1/ab.png",
        name=b"train/class1/aa.png"), "two members named"),
    Case("file and folder of one name", "archive", _good_zip_plus({"train/class1/x": b"1", "train/class1/x/y.png": b"2"}),
         "both a file and a folder"),
    Case("empty member", "archive", _good_zip_plus({"train/class1/empty.png": b""}), "empty.png"),
    Case("folder named like an image", "archive", _good_zip_plus({"train/zebra/x.png/": b"", "train/zebra/y.jpg/": b""}),
         "is empty"),
    Case("encrypted member", "archive", _patched("train/class1/zz.png", encode(rgb16(), "PNG"), flags=1), "encrypted"),
    Case("Deflate64 member", "archive",
         _patched("train/class1/zz.png", encode(rgb16(), "PNG"), compression=zipfile.ZIP_STORED, method=9), "Deflate64"),
    Case("bzip2 member", "archive",
         lambda t: _good_zip_plus({"train/class1/zz.png": encode(rgb16(), "PNG")}, compression=zipfile.ZIP_BZIP2)(t),
         "bzip2"),
    Case("LZMA member", "archive",
         lambda t: _good_zip_plus({"train/class1/zz.png": encode(rgb16(), "PNG")}, compression=zipfile.ZIP_LZMA)(t),
         "LZMA"),
    Case("unknown compression method 77", "archive",
         _patched("train/class1/zz.png", encode(rgb16(), "PNG"), compression=zipfile.ZIP_STORED, method=77),
         "method 77"),
    Case("hole in the central directory", "archive", _zip_truncated_cd, "zip archive"),
    Case("end record cut off", "archive",
         lambda t: _plain(t, "d.zip", _good_zip_plus({})(t).read_bytes()[:-30]), "neither a folder nor a zip"),
    Case("corrupt deflate stream", "archive", _zip_corrupt_data, "zz.png"),
    Case("two entries share one local header", "archive", _zip_overlap, "bb.png"),
    Case("cp437 (non-UTF-8) class name", "archive", _zip_cp437, None),
    Case("UTF-8 flag on invalid UTF-8 name", "archive", lambda t: patch_zip(
        _good_zip_plus({"train/class1/?.png": encode(rgb16(), "PNG")})(t), "train/class1/?.png",
        name=b"train/class1/\xff", flags=0x800), "cannot open zip archive"),
    Case("control character in class name", "archive",
         _good_zip_plus({"train/bad\nclass/a.png": encode(rgb16(), "PNG")}), "not printable"),
    Case("symbolic link stored in zip", "archive", _zip_symlink, "symbolic link stored"),
    Case("macOS Finder zip", "archive", _finder_zip, None),
    Case("self-extracting stub before the zip", "archive", _zip_prefixed, None),
]

IMAGES = [
    Case("truncated PNG", "image", img_case("zz.png", encode(rgb16(), "PNG")[:60]), "zz.png"),
    Case("truncated JPEG", "image", img_case("zz.jpg", encode(rgb16(), "JPEG")[:300]), "zz.jpg"),
    Case("zero bytes", "image", img_case("zz.png", b""), "zz.png"),
    Case("JPEG named .png", "image", img_case("zz.png", encode(rgb16(), "JPEG")), None),
    Case("text named .jpg", "image", img_case("zz.jpg", b"hello world\n"), "not a PNG, JPEG"),
    Case("SVG named .png", "image", img_case("zz.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>"), "not a PNG"),
    Case("ICO named .png", "image", img_case("zz.png", encode(rgb16(), "ICO")), "not a PNG"),
    Case("EPS named .tif (never reaches Ghostscript)", "image", img_case("zz.tif", b"%!PS-Adobe-3.0 EPSF-3.0\n"),
         "not a PNG"),
    Case("palette PNG", "image", img_case("zz.png", encode(rgb16().convert("P"), "PNG")), None),
    Case("palette PNG with tRNS", "image", img_case("zz.png", encode(rgb16().convert("P"), "PNG", transparency=3)),
         None),
    Case("16-bit grey PNG", "image",
         img_case("zz.png", encode(Image.fromarray(np.full((16, 16), 40000, np.uint16)), "PNG")), None),
    Case("grey+alpha PNG", "image", img_case("zz.png", encode(rgb16().convert("LA"), "PNG")), None),
    Case("RGBA PNG", "image", img_case("zz.png", encode(rgb16().convert("RGBA"), "PNG")), None),
    Case("CMYK JPEG", "image", img_case("zz.jpg", encode(rgb16().convert("CMYK"), "JPEG")), None),
    Case("grey JPEG", "image", img_case("zz.jpg", encode(rgb16().convert("L"), "JPEG")), None),
    Case("progressive JPEG", "image", img_case("zz.jpg", encode(rgb16(), "JPEG", progressive=True)), None),
    Case("animated GIF: first frame", "image",
         img_case("zz.gif", encode(rgb16().convert("P"), "GIF", save_all=True, append_images=[rgb16(2).convert("P")])),
         None),
    Case("animated WebP: first frame", "image",
         img_case("zz.webp", encode(rgb16(), "WEBP", save_all=True, append_images=[rgb16(2)])), None),
    Case("animated PNG: default image", "image", img_case("zz.png", APNG), None),
    Case("BMP", "image", img_case("zz.bmp", encode(rgb16(), "BMP")), None),
    Case("TIFF", "image", img_case("zz.tiff", encode(rgb16(), "TIFF")), None),
    Case("16-bit PGM", "image", img_case("zz.pgm", b"P5\n16 16\n65535\n" + b"\x80\x00" * 256), None),
    Case("lossy WebP", "image", img_case("zz.webp", encode(rgb16(), "WEBP")), None),
    Case("PNG with a bad ancillary CRC (libpng warns)", "image", img_case("zz.png", (lambda p: p[:33] + struct.pack(
        ">I", 4) + b"tEXtab\0c" + b"\0\0\0\0" + p[33:])(encode(rgb16(), "PNG"))), None),
    Case("interlaced (Adam7) PNG", "image", img_case("zz.png", png_interlaced(np.asarray(rgb16()))), None),
    Case("16-bit RGBA PNG", "image", img_case("zz.png", encode(Image.fromarray(
        np.full((16, 16, 4), 30000, np.uint16).view(np.uint8).reshape(16, 16, 8)[..., ::2].copy()), "PNG")), None),
    Case("1-bit PNG", "image", img_case("zz.png", encode(rgb16().convert("1"), "PNG")), None),
    Case("PNG pixel data with a bad CRC (torchvision segfaults)", "image", img_case("zz.png", png_damaged("crc")),
         "pixel data"),
    Case("PNG with an invalid row filter (torchvision segfaults)", "image", img_case("zz.png", png_damaged("filter")),
         "row filter"),
    Case("PNG pixel stream too short (torchvision segfaults)", "image", img_case("zz.png", png_damaged("short")),
         "pixel data"),
    Case("PNG deflate checksum wrong (torchvision segfaults)", "image", img_case("zz.png", png_damaged("adler")),
         "pixel data"),
    Case("PNG image data split by a text chunk (torchvision segfaults)", "image",
         img_case("zz.png", png_damaged("split")), "pixel data"),
    Case("PNG bomb 20000x20000, 49 KiB", "image", img_case("zz.png", png_bomb(20000, 20000)), "pixel limit",
         bomb=True),
    Case("PNG header 100000x100000", "image", img_case("zz.png", png_header_only(100000, 100000)), "pixel limit",
         bomb=True),
    Case("JPEG header 20000x20000", "image", img_case("zz.jpg", jpeg_sized(20000, 20000)), "pixel limit", bomb=True),
    Case("JPEG header 65535x65535", "image", img_case("zz.jpg", jpeg_sized(65535, 65535)), "pixel limit", bomb=True),
    Case("GIF screen 65535x65535", "image", img_case("zz.gif", gif((65535, 65535), [(16, 16)])), "pixel limit",
         bomb=True),
    Case("GIF frame larger than its screen", "image", img_case("zz.gif", gif((16, 16), [(8000, 8000)])),
         "pixel limit", bomb=True),
    Case("GIF: 20000 frames of 4000x4000 after a 16x16 one", "image", img_case("zz.gif", GIF_FIRST_SMALL_THEN_HUGE),
         None, bomb=True),
    Case("BMP header 5000x5000", "image", img_case("zz.bmp", bmp_header(5000, 5000)), "pixel limit", bomb=True),
    Case("BMP header 50000x50000", "image", img_case("zz.bmp", bmp_header(50000, 50000)), "pixel limit", bomb=True),
    Case("WebP VP8X canvas 16384x16384", "image", img_case("zz.webp", webp_header(b"VP8X", 16384, 16384)),
         "pixel limit", bomb=True),
    Case("WebP VP8L 16384x16384", "image", img_case("zz.webp", webp_header(b"VP8L", 16384, 16384)), "pixel limit",
         bomb=True),
    Case("WebP VP8 16383x16383", "image", img_case("zz.webp", webp_header(b"VP8 ", 16383, 16383)), "pixel limit",
         bomb=True),
    Case("TIFF header 100000x100000", "image", img_case("zz.tif", tiff(100000, 100000)), "pixel limit", bomb=True),
    Case("TIFF 16x16 with 65536x65536 tiles", "image", img_case("zz.tif", tiff(16, 16, tile=65536)), "pixel limit",
         bomb=True),
    Case("PGM header 100000x100000", "image", img_case("zz.pgm", b"P5\n100000 100000\n255\n" + b"\0" * 64),
         "pixel limit", bomb=True),
    Case("JPEG with 2000 scans", "image", img_case("zz.jpg", jpeg_many_scans(2000)), "scans"),
    Case("JPEG with stray bytes before its frame header", "image",
         img_case("zz.jpg", (lambda j: j[:20] + b"\0\0" + j[20:])(encode(rgb16(), "JPEG"))), "stray bytes"),
    Case("PNG with 2000 chunks before its pixels", "image", img_case("zz.png", (lambda p: p[:33] + png_chunk(
        b"tEXt", b"k\0v") * 2000 + p[33:])(encode(rgb16(), "PNG"))), "chunks"),
    Case("12-bit JPEG", "image", img_case("zz.jpg", (lambda j: j[:j.index(b"\xff\xc0") + 4] + b"\x0c"
                                                     + j[j.index(b"\xff\xc0") + 5:])(encode(rgb16(), "JPEG"))), "zz.jpg"),
    Case("tiny 8x8 images", "image", lambda t: good_tree(t / "tree", size=8), "at least 16"),
    Case("1x1 images", "image", lambda t: good_tree(t / "tree", size=1), "at least 16"),
    Case("mixed sizes", "image", img_case("zz.png", encode(rgb16(size=(20, 20)), "PNG")), "one size"),
]

TREES = [
    Case("class folder linking to its parent (loop)", "tree", lambda t: _link(t, "train/class1/up", ".."), "loop"),
    Case("class folder linking to the data root", "tree", lambda t: _link(t, "train/class1/root", "../.."), "loop"),
    Case("dangling link named .png", "tree", lambda t: _link(t, "train/class1/gone.png", "nowhere.png"),
         "broken symbolic link"),
    Case("link to itself named .png", "tree", lambda t: _link(t, "train/class1/self.png", "self.png"), "loop"),
    Case("dangling class-folder link", "tree", lambda t: _link(t, "train/ghost", "/nonexistent/ghost"),
         "broken symbolic link"),
    Case("FIFO named .png in a class", "tree", lambda t: _fifo(t, "train/class1/pipe.png"), "FIFO"),
    Case("socket named .png in a class", "tree", _socket, "socket"),
    Case("FIFO as --data", "tree", lambda t: (os.mkfifo(t / "pipe.zip"), t / "pipe.zip")[1], "FIFO"),
    Case("character device as --data", "tree", lambda t: "/dev/zero", "character device"),
    Case("empty --data", "tree", lambda t: "", "empty"),
    Case("--data is a link loop", "tree", _link_loop_path, "symbolic link loop"),
    Case("symlinked class folder is followed", "tree", _symlinked_class, None),
    Case("symlinked train/ and test/", "tree", _symlinked_split, None),
    Case("empty class folder", "tree", lambda t: (good_tree(t / "tree"), (t / "tree/train/zebra").mkdir())[0],
         "is empty"),
    Case("class folder with only a README", "tree", lambda t: tree_with(t, {"train/zebra/README.txt": b"x"}),
         "is empty"),
    Case("only train/", "tree", _tree_only("train"), "no test/"),
    Case("only test/", "tree", _tree_only("test"), "no train/"),
    Case("one class", "tree", lambda t: good_tree(t / "tree", classes=1), "only one class"),
    Case("test class unknown to train", "tree", lambda t: tree_with(t, {"test/zebra/a.png": encode(rgb16(), "PNG")}),
         "test/ has classes"),
    Case("README, Thumbs.db, .DS_Store, AppleDouble everywhere", "tree", _junk_everywhere, None),
    Case("class folder name with a newline", "tree",
         lambda t: tree_with(t, {"train/bad\nname/a.png": encode(rgb16(), "PNG")}), "not printable"),
    Case("class folder name not UTF-8", "tree", lambda t: _name_bytes(t, b"train/caf\xe9", "class"), "not printable"),
    Case("image file name not UTF-8", "tree", lambda t: _name_bytes(t, b"train/class1/\xff\xfe.png", "file"), None),
    Case("missing path with a newline in it", "tree", lambda t: str(t / "no\nsuch"), "not found"),
    Case("train is a file", "tree", lambda t: (t.joinpath("train").write_text("x"), t)[1], "no train/"),
    Case("wrapper folder around train/ and test/", "tree", _wrapped_dir, None),
    Case("150 nested folders in a class", "tree", _deep_tree, None),
]

CASES = ARCHIVES + IMAGES + TREES
AT_CAP = Case("three 4096x4096 images (at the pixel cap)", "image", _at_cap, None)


def _check(case: Case, res: Result) -> None:
    assert "Traceback" not in res.err, res.err
    assert res.code in (0, 2), f"exit {res.code} (negative: killed by signal); stderr: {res.err}"
    if case.expect is None:
        assert res.code == 0 and res.err == "", res.err
        assert "class" in res.out or "caf" in res.out, res.out
    else:
        assert res.code == 2, res.out
        assert res.err.startswith("longtail: error:") and res.err.count("\n") == 1, res.err
        assert case.expect in res.err, res.err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_attack_is_one_line_or_loads(case, tmp_path, cli):
    inputs = tmp_path / "in"
    inputs.mkdir()
    data = case.build(inputs)
    before = snapshot(inputs)
    res = cli.run(["data", "info", "--data", str(data)], tmp_path / "cache")
    _check(case, res)
    assert snapshot(inputs) == before
    if os.environ.get("LONGTAIL_ATTACK_LOG"):  # how the figures at the top of this file were measured
        with open(os.environ["LONGTAIL_ATTACK_LOG"], "a") as log:
            log.write(f"{(res.rss - cli.baseline) / MIB:8.1f} MiB  {case.id}: {res.err.strip() or '(loads)'}\n")
    if case.bomb:
        assert res.rss - cli.baseline <= BOMB_RSS_SLACK, f"peak RSS grew by {(res.rss - cli.baseline) / MIB:.0f} MiB"


def test_images_at_the_pixel_cap_load_within_what_they_need(tmp_path, cli):
    inputs = tmp_path / "in"
    inputs.mkdir()
    res = cli.run(["data", "info", "--data", str(_at_cap(inputs))], tmp_path / "cache")
    _check(AT_CAP, res)
    need = 3 * 3 * 4096 * 4096
    if os.environ.get("LONGTAIL_ATTACK_LOG"):
        with open(os.environ["LONGTAIL_ATTACK_LOG"], "a") as log:
            log.write(f"{(res.rss - cli.baseline) / MIB:8.1f} MiB  {AT_CAP.id}: need {need / MIB:.0f} MiB\n")
    assert res.rss - cli.baseline <= need + BOMB_RSS_SLACK, f"{(res.rss - cli.baseline) / MIB:.0f} MiB"


# --- the real command, as a user runs it -----------------------------------------------------------


def _python_m(argv: list[str], cache: Path, as_limit: int | None = None, timeout: int = 120) -> Result:
    env = {**_env(), "LONGTAIL_DATA": str(cache)}

    def limit():
        if as_limit:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "longtail", *argv], stdout=out, stderr=err, env=env,
                                preexec_fn=limit)
        deadline = time.monotonic() + timeout
        while True:  # wait4, not wait: it gives this child's own peak memory
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:  # a hang (a FIFO opened for reading) fails here
                proc.kill()
                os.wait4(proc.pid, 0)
                raise AssertionError(f"longtail {' '.join(argv)} did not finish in {timeout} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Result(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                      usage.ru_maxrss * 1024)


def test_python_m_longtail_refuses_a_fifo_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "data.zip")
    res = _python_m(["data", "info", "--data", str(tmp_path / "data.zip")], tmp_path / "cache", timeout=120)
    _check(Case("fifo", "tree", lambda t: t, "FIFO"), res)


def test_python_m_longtail_refuses_a_png_bomb_under_a_memory_limit(tmp_path, cli):
    root = tree_with(tmp_path, {"train/class1/zz.png": png_bomb(20000, 20000)})
    res = _python_m(["data", "info", "--data", str(root)], tmp_path / "cache", as_limit=cli.vm + AS_HEADROOM)
    _check(Case("bomb", "image", lambda t: t, "pixel limit"), res)
    assert res.rss <= cli.rss + BOMB_RSS_SLACK, f"{res.rss / MIB:.0f} MiB against {cli.rss / MIB:.0f} MiB at import"


# --- unreadable files, simulated (root reads through chmod 000) -------------------------------------


def test_unreadable_image_file_is_one_line(tmp_path, monkeypatch):
    root = good_tree(tmp_path / "tree")
    real_open = os.open
    victim = str(root / "train" / "class1" / "0001.png")

    def denying_open(path, flags, *a, **k):
        if os.fspath(path) == victim:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", denying_open)
    with pytest.raises(LongtailError, match="0001.png: Permission denied") as e:
        load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value)


def test_unreadable_class_folder_is_one_line(tmp_path, monkeypatch):
    root = good_tree(tmp_path / "tree")
    real_scandir = os.scandir

    def denying_scandir(path="."):
        if os.fspath(path).endswith("class1"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denying_scandir)
    with pytest.raises(LongtailError, match="class1: Permission denied"):
        load_dataset(str(root), cache_dir=tmp_path / "cache")


def test_read_error_in_the_middle_of_a_file_is_one_line(tmp_path, monkeypatch):
    import longtail.data.sources as sources

    root = good_tree(tmp_path / "tree")

    def failing(f, name):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sources, "_read_capped", failing)
    with pytest.raises(LongtailError, match="Input/output error"):
        load_dataset(str(root), cache_dir=tmp_path / "cache")


# --- fuzzing: loads, or one LongtailError line; never another exception ------------------------------

FUZZ = settings(max_examples=int(os.environ.get("LONGTAIL_FUZZ_EXAMPLES", 40)), deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)


def _loads_or_one_line(spec: Path) -> None:
    with tempfile.TemporaryDirectory() as cache:
        try:
            ds = load_dataset(str(spec), cache_dir=Path(cache))
        except LongtailError as e:
            assert str(e) and "\n" not in str(e)
        else:
            assert isinstance(ds, ImageDataset) and ds.train_images.dtype.is_floating_point is False


def _mutate(data: bytes, draw) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "flip" and out:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and out:
            out[pos] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, draw(st.integers(0, 255))]))
        elif op == "cut":
            del out[pos:pos + draw(st.integers(1, 64))]
        else:
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
    return bytes(out)


def test_a_zip_member_whose_deflate_stream_is_damaged_inside_is_one_line(tmp_path):
    """zlib's own error, raised while inflating, before any CRC check (the fuzzer found "invalid
    stored block lengths"; here the first block's type bits are set to 11, "invalid block type")."""
    path = zip_tree(good_tree(tmp_path / "tree", per_class=2), tmp_path / "d.zip")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        first = z.infolist()[0]
    assert first.compress_type == zipfile.ZIP_DEFLATED
    name_len, extra_len = struct.unpack("<HH", data[first.header_offset + 26:first.header_offset + 30])
    start = first.header_offset + 30 + name_len + extra_len  # the member's compressed bytes
    data[start] |= 0b110  # BTYPE = 11, reserved
    path.write_bytes(bytes(data))
    with pytest.raises(zlib.error):  # what the loader now turns into one line
        with zipfile.ZipFile(path) as z:
            z.read(first)
    with pytest.raises(LongtailError, match=r"^cannot read .*invalid block type"):
        load_dataset(str(path), cache_dir=tmp_path / "cache")


class FuzzHome:
    """Seeds for the fuzzers, built once; a short repr keeps hypothesis's failure reports readable."""

    def __init__(self, home: Path):
        self.home = home
        self.tree = good_tree(home / "tree", per_class=2)
        self.samples = {
            "png": encode(rgb16(), "PNG"), "jpg": encode(rgb16(), "JPEG"), "gif": encode(rgb16().convert("P"), "GIF"),
            "bmp": encode(rgb16(), "BMP"), "webp": encode(rgb16(), "WEBP"), "tif": encode(rgb16(), "TIFF"),
            "pgm": encode(rgb16().convert("L"), "PPM"),
            "palette.png": encode(rgb16().convert("P"), "PNG", transparency=2),
            "progressive.jpg": encode(rgb16(), "JPEG", progressive=True),
            "interlaced.png": png_interlaced(np.asarray(rgb16())),
            "la.png": encode(rgb16().convert("LA"), "PNG"),
        }
        self.archive = zip_tree(self.tree, home / "base.zip", prefix="w/").read_bytes()

    def __repr__(self) -> str:
        return f"FuzzHome({self.home})"


@pytest.fixture(scope="module")
def fuzz_home(tmp_path_factory):
    return FuzzHome(tmp_path_factory.mktemp("fuzz"))


@FUZZ
@given(data=st.data())
def test_fuzz_archive_bytes(fuzz_home, data):
    with tempfile.TemporaryDirectory(dir=fuzz_home.home) as d:
        path = Path(d) / "f.zip"
        path.write_bytes(_mutate(fuzz_home.archive, data.draw))
        _loads_or_one_line(path)


@FUZZ
@given(data=st.data())
def test_fuzz_image_bytes(fuzz_home, data):
    kind = data.draw(st.sampled_from(sorted(fuzz_home.samples)))
    with tempfile.TemporaryDirectory(dir=fuzz_home.home) as d:
        root = Path(d) / "tree"
        shutil.copytree(fuzz_home.tree, root)
        (root / "train" / "class1" / f"zz.{kind}").write_bytes(_mutate(fuzz_home.samples[kind], data.draw))
        _loads_or_one_line(root)


NAME_PART = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"], exclude_characters="\0"), max_size=8) | (
    st.sampled_from(["..", ".", "", "train", "test", "__MACOSX", "._x.png", ".DS_Store", "a.png", "C:", "\\", "x.png/"]))


@FUZZ
@given(names=st.lists(st.lists(NAME_PART, min_size=1, max_size=5).map("/".join), max_size=8))
def test_fuzz_member_names(fuzz_home, names):
    with tempfile.TemporaryDirectory(dir=fuzz_home.home) as d:
        path = Path(d) / "n.zip"
        with zipfile.ZipFile(path, "w") as z, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Duplicate name": duplicates are part of the attack
            for i, name in enumerate(names + ["train/a/x.png", "train/b/x.png", "test/a/x.png"]):
                if name:
                    z.writestr(name, fuzz_home.samples["png"] if i % 2 == 0 else b"")
        _loads_or_one_line(path)
