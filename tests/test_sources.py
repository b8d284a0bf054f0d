import io
import time
import zipfile

import pytest
import torch

from longtail.data.sources import load_dataset
from longtail.errors import LongtailError
from tests.conftest import make_image_folder


def _zip_tree(folder, zpath, prefix=""):
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, prefix + p.relative_to(folder).as_posix())
    return zpath


def test_real_cifar_zip_shapes_and_counts(cifar):
    assert cifar.classes[0] == "airplane" and cifar.classes[-1] == "truck" and cifar.num_classes == 10
    assert cifar.train_images.shape == (50000, 3, 32, 32) and cifar.train_images.dtype == torch.uint8
    assert cifar.test_images.shape == (10000, 3, 32, 32)
    assert torch.bincount(cifar.train_labels).tolist() == [5000] * 10
    assert cifar.fingerprint.startswith("6557ddbcfc6140a9")


def test_second_load_is_cached_and_fast(cifar, cifar_zip):
    t = time.perf_counter()
    again = load_dataset(str(cifar_zip))
    assert time.perf_counter() - t < 1.0
    assert torch.equal(again.test_images, cifar.test_images)


def test_folder_and_zip_give_the_same_dataset(tmp_path):
    folder = make_image_folder(tmp_path / "tree", classes=3, per_class=4, size=(20, 18))
    a = load_dataset(str(folder), cache_dir=tmp_path / "cache")
    b = load_dataset(str(_zip_tree(folder, tmp_path / "d.zip", prefix="wrapped/")), cache_dir=tmp_path / "cache")
    assert a.image_shape == (3, 20, 18) and a.classes == ["class0", "class1", "class2"]
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)


def test_grayscale_folder_has_one_channel(tmp_path):
    ds = load_dataset(str(make_image_folder(tmp_path / "g", channels=1)), cache_dir=tmp_path / "c")
    assert ds.image_shape == (1, 16, 16)


@pytest.mark.parametrize("case,expect", [
    ("missing", "not found"), ("no_test", "no test/"), ("empty_class", "is empty"),
    ("mixed_sizes", "one size"), ("corrupt", "bad.png"), ("one_class", "only one class"),
    ("tiny", "at least 16"), ("unsafe_zip", "unsafe member"),
])
def test_bad_sources_are_one_line_errors(tmp_path, case, expect):
    root = tmp_path / "d"
    if case != "missing":
        make_image_folder(root, classes=1 if case == "one_class" else 2, per_class=3,
                          size=8 if case == "tiny" else 16)
    if case == "no_test":
        import shutil
        shutil.rmtree(root / "test")
    elif case == "empty_class":
        (root / "train" / "zzz").mkdir()
    elif case == "mixed_sizes":
        make_image_folder(tmp_path / "other", classes=2, per_class=1, size=24)
        (tmp_path / "other" / "train" / "class0" / "0000.png").rename(root / "train" / "class0" / "big.png")
    elif case == "corrupt":
        (root / "train" / "class1" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    if case == "unsafe_zip":
        path = tmp_path / "evil.zip"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("../train/a/x.png", b"x")
    else:
        path = root
    with pytest.raises(LongtailError) as e:
        load_dataset(str(path), cache_dir=tmp_path / "cache")
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_official_cifar10_without_network_says_what_to_do(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(tvu, "download_url", offline)
    with pytest.raises(LongtailError) as e:
        load_dataset("cifar10", cache_dir=tmp_path)
    assert "--data" in str(e.value) and "cifar-10-python.tar.gz" in str(e.value)


# --- the failures an outside attack on the CLI found, one test per kind --------------------------

import os  # noqa: E402
import signal  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import longtail.data.images as images  # noqa: E402
import longtail.data.sources as sources  # noqa: E402
from tests.test_attack_data import (  # noqa: E402
    encode, jpeg_sized, patch_zip, png_bomb, png_header_only, rgb16, zip_tree)


def _tree_with(tmp_path: Path, name: str, data: bytes, **kw) -> Path:
    """Two classes; ``name`` lands in train/class1 after 0000.png and 0001.png (train index 4)."""
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=2, **kw)
    (root / "train" / "class1" / name).write_bytes(data)
    return root


def _refused(path: Path, tmp_path: Path) -> str:
    with pytest.raises(LongtailError) as e:
        load_dataset(str(path), cache_dir=tmp_path / "cache")
    assert "\n" not in str(e.value)
    return str(e.value)


@pytest.mark.parametrize("name,data", [
    ("bomb.png", png_bomb(20000, 20000)),  # 49 KiB that decodes to 400 MB
    ("header.png", png_header_only(100000, 100000)),  # above Pillow's own bomb limit, once swallowed
    ("sof.jpg", jpeg_sized(30000, 30000)),  # a 1 KiB JPEG that once took 3 GB
])
def test_pixel_bombs_are_refused_from_the_header_before_any_decoder(tmp_path, monkeypatch, name, data):
    def guarded(decoder):
        def decode(raw, *a, **k):
            if raw.numel() == len(data):
                raise AssertionError("a decoder saw the bomb")
            return decoder(raw, *a, **k)
        return decode

    for name_ in ("decode_png", "decode_jpeg", "decode_webp"):
        monkeypatch.setattr(images, name_, guarded(getattr(images, name_)))
    message = _refused(_tree_with(tmp_path, name, data), tmp_path)
    assert name in message and "pixel limit" in message


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"\xff\xd8\xff\xe0\0\x10JFIF\0" + b"\xff\xd9"])
def test_an_image_whose_header_cannot_be_read_is_refused_by_name(tmp_path, data):
    message = _refused(_tree_with(tmp_path, "zz.png", data), tmp_path)
    assert "cannot read the header of image train/class1/zz.png" in message


def test_a_zip_member_lying_about_its_size_is_never_inflated_past_the_cap(tmp_path):
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=2)
    path = zip_tree(root, tmp_path / "d.zip", extra={"train/class1/liar.png": b"\0" * (256 * 1024 * 1024)})
    patch_zip(path, "train/class1/liar.png", size=1000)  # the central directory claims 1000 bytes
    tracemalloc.start()
    try:
        message = _refused(path, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "liar.png" in message and peak < 3 * sources.MAX_MEMBER_BYTES


def test_a_file_read_stops_at_the_cap_whatever_its_size_said(tmp_path, monkeypatch):
    root = _tree_with(tmp_path, "zz.png", encode(rgb16(), "PNG"))
    monkeypatch.setattr(sources, "MAX_MEMBER_BYTES", 100)  # the listing saw it small; it is not
    message = _refused(root, tmp_path)
    assert "too large" in message


def _colour_of(tmp_path: Path, name: str, data: bytes) -> np.ndarray:
    ds = load_dataset(str(_tree_with(tmp_path, name, data)), cache_dir=tmp_path / "cache")
    assert ds.image_shape == (3, 16, 16)
    return ds.train_images[4].permute(1, 2, 0).numpy().astype(int)


def test_palette_png_gives_colours_not_palette_indices(tmp_path):
    pal = rgb16().convert("P")
    assert (_colour_of(tmp_path, "zz.png", encode(pal, "PNG")) == np.asarray(pal.convert("RGB"))).all()


def test_16_bit_png_is_scaled_to_8_bits(tmp_path):
    wide = Image.fromarray(np.full((16, 16), 40000, np.uint16))
    assert (_colour_of(tmp_path, "zz.png", encode(wide, "PNG")) == round(40000 * 255 / 65535)).all()


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_transparency_is_composited_onto_white(tmp_path, mode):
    alpha = np.zeros((16, 16), np.uint8)
    alpha[:, 8:] = 255
    alpha[0, :] = 128
    grey = np.full((16, 16), 100, np.uint8)
    bands = [grey, alpha] if mode == "LA" else [grey, grey, grey, alpha]
    img = Image.merge(mode, [Image.fromarray(b) for b in bands])
    got = _colour_of(tmp_path, "zz.png", encode(img, "PNG"))
    assert (got[1:, :8] == 255).all() and (got[1:, 8:] == 100).all()
    assert (got[0, :] == (100 * 128 + 255 * 127 + 127) // 255).all()


def test_cmyk_jpeg_gives_the_colours_a_viewer_shows(tmp_path):
    data = encode(rgb16().convert("CMYK"), "JPEG", quality=95)
    shown = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert np.abs(_colour_of(tmp_path, "zz.jpg", data) - shown).mean() < 4


def test_animated_gif_gives_its_first_frame(tmp_path):
    first, second = rgb16(1).convert("P"), rgb16(2).convert("P")
    data = encode(first, "GIF", save_all=True, append_images=[second])
    assert (_colour_of(tmp_path, "zz.gif", data) == np.asarray(first.convert("RGB"))).all()


def test_dataset_is_grey_only_when_every_image_is_grey(tmp_path):
    la = Image.merge("LA", [Image.fromarray(np.full((16, 16), 7, np.uint8))] * 2)
    grey = load_dataset(str(_tree_with(tmp_path, "zz.png", encode(la, "PNG"), channels=1)), cache_dir=tmp_path / "c")
    assert grey.image_shape == (1, 16, 16)
    mixed = load_dataset(str(_tree_with(tmp_path / "m", "zz.png", encode(rgb16(), "PNG"), channels=1)),
                         cache_dir=tmp_path / "c")
    assert mixed.image_shape == (3, 16, 16)
    assert torch.equal(mixed.train_images[0, 0], mixed.train_images[0, 2])  # grey fills all three channels


def test_damaged_png_pixel_data_is_one_line_not_a_crash(tmp_path):
    # torchvision's decode_png dies with SIGSEGV on a libpng error in the pixel data; a fork keeps a
    # regression from taking pytest down with it.
    data = bytearray(encode(rgb16(), "PNG"))
    data[60] ^= 0x10  # inside IDAT: its CRC no longer matches
    root = _tree_with(tmp_path, "zz.png", bytes(data))
    pid = os.fork()
    if pid == 0:
        try:
            load_dataset(str(root), cache_dir=tmp_path / "cache")
            code = 3
        except LongtailError as e:
            code = 0 if "zz.png" in str(e) and "pixel data" in str(e) else 4
        except BaseException:
            code = 5
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_symlinked_class_folder_is_followed(tmp_path):
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=2)
    other = make_image_folder(tmp_path / "other", classes=1, per_class=2, class_names=["linked"], seed=3)
    for split in ("train", "test"):
        (root / split / "linked").symlink_to(other / split / "linked")
    ds = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert ds.classes == ["class0", "class1", "linked"] and torch.bincount(ds.train_labels).tolist() == [2, 2, 2]


@pytest.mark.parametrize("link,target,expect", [
    ("train/class1/up", "..", "train/class1/up is a symbolic link loop"),
    ("train/class1/gone.png", "nowhere.png", "train/class1/gone.png is a broken symbolic link"),
    ("train/class1/self.png", "self.png", "train/class1/self.png is a symbolic link loop"),
])
def test_dangling_and_looping_links_are_one_line_naming_the_file(tmp_path, link, target, expect):
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=2)
    (root / link).symlink_to(target)
    assert expect in _refused(root, tmp_path)


def _zip_with_member(tmp_path: Path, compression=zipfile.ZIP_DEFLATED, **patch) -> Path:
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=2)
    path = zip_tree(root, tmp_path / "d.zip", extra={"train/class1/zz.png": encode(rgb16(), "PNG")},
                    compression=compression)
    return patch_zip(path, "train/class1/zz.png", **patch) if patch else path


@pytest.mark.parametrize("build,expect", [
    (lambda t: _zip_with_member(t, flags=1), "zz.png in d.zip is encrypted"),
    (lambda t: _zip_with_member(t, zipfile.ZIP_STORED, method=9), "zz.png in d.zip uses Deflate64 compression"),
    (lambda t: _zip_with_member(t, zipfile.ZIP_BZIP2), "uses bzip2 compression"),
    (lambda t: _zip_with_member(t, zipfile.ZIP_LZMA), "uses LZMA compression"),
])
def test_encrypted_and_unsupported_zip_members_are_one_line(tmp_path, build, expect):
    assert expect in _refused(build(tmp_path), tmp_path)


@pytest.mark.parametrize("spec", ["", "   "])
def test_empty_data_path_is_refused_not_read_as_the_current_folder(tmp_path, spec):
    with pytest.raises(LongtailError, match="the data path is empty"):
        load_dataset(spec, cache_dir=tmp_path / "cache")


def test_fifo_data_path_is_refused_without_opening_it(tmp_path):
    os.mkfifo(tmp_path / "data.zip")
    old = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("opened the FIFO")))
    signal.alarm(20)
    try:
        message = _refused(tmp_path / "data.zip", tmp_path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert "is a FIFO (named pipe), not a folder or a zip archive" in message


def test_macos_finder_zip_loads_like_its_folder(tmp_path):
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=2)
    junk = {"__MACOSX/data/._train": b"\0\5\26\7", "__MACOSX/data/train/class0/._0000.png": b"x",
            "data/.DS_Store": b"Bud1", "data/train/class1/._0001.png": b"x", "data/Thumbs.db": b"x"}
    path = zip_tree(root, tmp_path / "Archive.zip", prefix="data/", extra=junk)
    zipped = load_dataset(str(path), cache_dir=tmp_path / "cache")
    folder = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert torch.equal(zipped.train_images, folder.train_images) and zipped.classes == folder.classes
    # __MACOSX counts once, as a folder; .DS_Store, Thumbs.db and the AppleDouble file once each
    assert zipped.skipped == {"system file": 4}


def test_files_are_chosen_by_extension_and_the_rest_is_counted(tmp_path):
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=2)
    for rel in ("README.txt", "train/class0/notes.csv", "train/class0/Thumbs.db", "train/class1/.DS_Store",
                "train/class1/._0000.png", "train/labels.json", "test/class0/.cache/x.png", "LICENSE"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"not an image")
    (root / "train" / "class0" / "UPPER.PNG").write_bytes((root / "train" / "class0" / "0000.png").read_bytes())
    expected = {"hidden": 1, "not an image": 1, "not in a class folder": 1, "outside train/ and test/": 2,
                "system file": 3}
    ds = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert ds.skipped == expected and torch.bincount(ds.train_labels).tolist() == [3, 2]
    again = load_dataset(str(root), cache_dir=tmp_path / "cache")  # from the decoded cache
    assert again.skipped == expected and torch.equal(again.train_images, ds.train_images)


def test_the_cache_file_name_carries_the_cache_format(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=2)
    first = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache" / "decoded").iterdir()) == [
        f"{first.fingerprint}.v3.json", f"{first.fingerprint}.v3.u8"]
    monkeypatch.setattr(sources, "CACHE_FORMAT", 4)  # a new selection rule: the old cache is not read
    decoded = []
    real = sources._read_folder_tree
    monkeypatch.setattr(sources, "_read_folder_tree", lambda *a: decoded.append(1) or real(*a))
    load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert decoded and (tmp_path / "cache" / "decoded" / f"{first.fingerprint}.v4.json").exists()


# --- the memory-mapped decoded cache ---------------------------------------------------------------

_MAPPED_PROBE = """
import gc, json, sys, threading, time
from pathlib import Path
from longtail.data.sources import load_dataset

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

peak, done = [0], threading.Event()

def sample():
    while not done.wait(0.002):
        peak[0] = max(peak[0], status("RssAnon"))

before = status("RssAnon")
threading.Thread(target=sample, daemon=True).start()
ds = load_dataset(sys.argv[1], cache_dir=Path(sys.argv[2]), image_size=1024)  # decoded into the cache
done.set()
decode_peak = max(peak[0], status("RssAnon")) - before
size = ds.train_images.numel() + ds.test_images.numel()
del ds
gc.collect()
anon, files = status("RssAnon"), status("RssFile")
ds = load_dataset(sys.argv[1], cache_dir=Path(sys.argv[2]), image_size=1024)  # mapped from the cache
touched = int(ds.train_images.sum()) + int(ds.test_images.sum())  # every page of the file
print(json.dumps({"size": size, "decode_peak": decode_peak, "anon": status("RssAnon") - anon,
                  "file": status("RssFile") - files}))
"""


def test_a_dataset_is_decoded_into_a_file_and_mapped_not_read_into_memory(tmp_path):
    """In a fresh process, 64 images decoded at 1024x1024 (192 MiB): decoding holds one image at a
    time, and the loaded dataset's pages are file-backed (RssFile), not anonymous memory (RssAnon)."""
    import json
    import subprocess
    import sys

    root = make_image_folder(tmp_path / "tree", classes=2, per_class=24, test_per_class=8)
    src = Path(sources.__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", _MAPPED_PROBE, str(root), str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(src)})
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    mib = 1024 * 1024
    assert got["size"] == 64 * 3 * 1024 * 1024
    assert got["decode_peak"] < 64 * mib, got
    assert got["anon"] < 32 * mib and got["file"] > 160 * mib, got


def test_a_failed_decode_leaves_no_cache_entry(tmp_path):
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=3)
    (root / "test" / "class1" / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # the last image decoded
    assert "zz.png" in _refused(root, tmp_path)
    assert list((tmp_path / "cache" / "decoded").iterdir()) == []  # nor a temporary file


def test_a_damaged_cache_entry_is_decoded_again(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=3)
    first = load_dataset(str(root), cache_dir=tmp_path / "cache")
    pixels = tmp_path / "cache" / "decoded" / f"{first.fingerprint}.v3.u8"
    # replaced, not truncated in place: `first` still maps the old file, and a mapped file that
    # shrinks under a process kills it with SIGBUS (longtail itself only ever replaces files)
    short = pixels.with_name("short")
    short.write_bytes(pixels.read_bytes()[:100])
    os.replace(short, pixels)
    decoded = []
    real = sources._decode_all
    monkeypatch.setattr(sources, "_decode_all", lambda *a: decoded.append(1) or real(*a))
    again = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert decoded and torch.equal(again.train_images, first.train_images)
    assert pixels.stat().st_size == first.train_images.numel() + first.test_images.numel()


def test_a_cache_folder_without_room_decodes_into_memory(tmp_path, monkeypatch):
    import longtail.data.cache as cache

    root = make_image_folder(tmp_path / "tree", classes=2, per_class=3)
    mapped = load_dataset(str(root), cache_dir=tmp_path / "cache")
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda p: type("U", (), {"free": 0})())
    in_memory = load_dataset(str(root), cache_dir=tmp_path / "full")
    assert torch.equal(in_memory.train_images, mapped.train_images) and in_memory.fingerprint == mapped.fingerprint
    assert list((tmp_path / "full" / "decoded").iterdir()) == []


def test_official_cifar10_goes_through_the_mapped_cache_at_any_size(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    class Batches:  # what torchvision's CIFAR10 gives, without the download
        tgz_md5 = tvd.CIFAR10.tgz_md5
        classes = [f"c{j}" for j in range(10)]
        made = []

        def __init__(self, root, train=True, download=False):
            n = 20 if train else 10
            self.data = np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            self.targets = [i % 10 for i in range(n)]
            Batches.made.append(train)

    monkeypatch.setattr(tvd, "CIFAR10", Batches)
    ds = load_dataset("cifar10", cache_dir=tmp_path)
    assert ds.fingerprint == f"cifar10-official-{Batches.tgz_md5}" and ds.classes == Batches.classes
    assert torch.equal(ds.train_images, torch.from_numpy(Batches(None).data).permute(0, 3, 1, 2))
    assert ds.test_labels.tolist() == list(range(10)) and ds.image_shape == (3, 32, 32)
    Batches.made.clear()
    again = load_dataset("cifar10", cache_dir=tmp_path)
    assert not Batches.made and torch.equal(again.test_images, ds.test_images)  # mapped from the cache
    small = load_dataset("cifar10", cache_dir=tmp_path, image_size=16)
    assert small.image_shape == (3, 16, 16) and small.fingerprint != ds.fingerprint
