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
