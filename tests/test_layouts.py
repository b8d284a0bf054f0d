"""Users' own data: resizing at decode, the layouts (train/ and test/, train/ alone, <class>/
folders, file lists), the --test-fraction hold-out, and the one-line refusals of each."""

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_png

from longtail.cli import build_parser, main
from longtail.config import TrainConfig, resolve_train_config
from longtail.data import sources
from longtail.data.options import ImageSize, LoadOptions
from longtail.data.resize import resize_image
from longtail.data.sources import load_dataset
from longtail.errors import LongtailError
from tests.conftest import make_image_folder, one_line_error


def _png(img: torch.Tensor) -> bytes:
    return encode_png(img).numpy().tobytes()


def _bands(height: int, width: int) -> torch.Tensor:
    """Three vertical bands of equal width: red, green, blue."""
    img = torch.zeros(3, height, width, dtype=torch.uint8)
    third = width // 3
    img[0, :, :third] = 255
    img[1, :, third:2 * third] = 255
    img[2, :, 2 * third:] = 255
    return img


# --- resizing --------------------------------------------------------------------------------------


def test_crop_keeps_the_centre_and_stretch_keeps_everything():
    img = _bands(32, 96)  # 1:3, red | green | blue
    crop = resize_image(img, (16, 16), "crop")
    stretch = resize_image(img, (16, 16), "stretch")
    assert crop.shape == stretch.shape == (3, 16, 16) and crop.dtype == torch.uint8
    # crop: the shorter side 32 -> 16, the width 96 -> 48, the middle 16 columns kept = the green band
    assert (crop[1, :, 2:-2] == 255).all() and (crop[0, :, 2:-2] == 0).all() and (crop[2, :, 2:-2] == 0).all()
    # stretch: all three bands, squeezed to about 5 columns each
    assert (stretch[0, :, :4] == 255).all() and (stretch[1, :, 6:10] == 255).all() and (stretch[2, :, -4:] == 255).all()


def test_crop_to_height_x_width_covers_then_cuts_the_centre():
    img = _bands(30, 90)
    out = resize_image(img, (20, 40), "crop")  # covers 20x40 at 20x60, keeps columns 10..49 of 60
    assert out.shape == (3, 20, 40)
    assert (out[1, :, 12:28] == 255).all() and (out[0, :, :8] == 255).all() and (out[2, :, -8:] == 255).all()
    grey = resize_image(torch.full((1, 50, 40), 77, dtype=torch.uint8), (16, 16), "stretch")
    assert grey.shape == (1, 16, 16) and (grey == 77).all()
    same = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    assert resize_image(same, (16, 16), "crop") is same  # already the size: untouched


def _mixed_tree(root: Path) -> Path:
    make_image_folder(root, classes=2, per_class=3, size=24)
    (root / "train" / "class1" / "wide.png").write_bytes(_png(_bands(32, 96)))
    return root


def test_mixed_sizes_are_refused_naming_image_size_and_resized_with_it(tmp_path):
    root = _mixed_tree(tmp_path / "tree")
    with pytest.raises(LongtailError, match="one size, or give --image-size") as e:
        load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert "wide.png is 96x32 px" in str(e.value)
    ds = load_dataset(str(root), cache_dir=tmp_path / "cache", image_size=16)
    assert ds.image_shape == (3, 16, 16) and ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    # the wide image is the last of class1 (sorted names): its centre, the green band
    assert (ds.train_images[6, 1, :, 2:-2] == 255).all() and (ds.train_images[6, 0, :, 2:-2] == 0).all()
    stretched = load_dataset(str(root), cache_dir=tmp_path / "cache", image_size=[16, 24], resize="stretch")
    assert stretched.image_shape == (3, 16, 24) and (stretched.train_images[6, 0, :, :4] == 255).all()


def test_the_cache_key_and_fingerprint_change_with_size_and_mode(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "tree", classes=2, per_class=2, size=20)
    plain = load_dataset(str(root), cache_dir=tmp_path / "cache")
    loads = {(s, m): load_dataset(str(root), cache_dir=tmp_path / "cache", image_size=s, resize=m)
             for s in (16, 24) for m in ("crop", "stretch")}
    prints = {plain.fingerprint} | {ds.fingerprint for ds in loads.values()}
    assert len(prints) == 5
    assert len(list((tmp_path / "cache" / "decoded").glob("*.u8"))) == 5
    assert load_dataset(str(root), cache_dir=tmp_path / "cache", image_size="16x16").fingerprint == \
        loads[(16, "crop")].fingerprint  # N and NxN, crop given or not: one normal form, one cache
    decoded = []
    real = sources._decode_all
    monkeypatch.setattr(sources, "_decode_all", lambda *a: decoded.append(1) or real(*a))
    again = load_dataset(str(root), cache_dir=tmp_path / "cache", image_size=24, resize="stretch")
    assert not decoded and torch.equal(again.train_images, loads[(24, "stretch")].train_images)


def test_image_size_is_recorded_as_an_int_or_height_width():
    from longtail.inference.model import _image_size

    for text, recorded in (("128", 128), ("96x128", [96, 128])):
        ns = build_parser().parse_args(["train", "--image-size", text])
        from longtail.cli import _cli_values

        cfg = resolve_train_config(_cli_values(ns, TrainConfig))
        assert cfg.image_size == recorded and json.loads(json.dumps(cfg.to_dict()))["image_size"] == recorded
        assert _image_size(recorded, Path(".")) == ((128, 128) if recorded == 128 else (96, 128))
    assert LoadOptions.of({"image_size": [96, 128], "resize": None}).size == (96, 128)


# --- layouts -----------------------------------------------------------------------------------------


def _train_only(root: Path) -> Path:
    make_image_folder(root, classes=3, per_class=10)
    shutil.rmtree(root / "test")
    return root


def _flat(root: Path) -> Path:
    make_image_folder(root / "x", classes=3, per_class=10)
    for d in (root / "x" / "train").iterdir():
        d.rename(root / d.name)
    shutil.rmtree(root / "x")
    (root / "README.txt").write_text("not a class")
    return root


def _flat_zip(root: Path) -> Path:
    folder = _flat(root / "photos")
    path = root / "photos.zip"
    with zipfile.ZipFile(path, "w") as z:
        for p in sorted(folder.rglob("*")):
            z.write(p, p.relative_to(root).as_posix())  # photos/<class>/... : one wrapper folder
    return path


def _lists(root: Path) -> str:
    make_image_folder(root / "images", classes=3, per_class=10, test_per_class=4)
    for split in ("train", "test"):
        lines = [f"images/{p.relative_to(root / 'images').as_posix()} {int(p.parent.name[-1])}"
                 for p in sorted((root / "images" / split).rglob("*.png"))]
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return f"list:{root / 'train.txt'},{root / 'test.txt'}"


@pytest.mark.parametrize("layout,build,fraction,classes,train,test", [
    ("split", lambda r: make_image_folder(r, classes=3, per_class=10, test_per_class=4), None,
     ["class0", "class1", "class2"], [10] * 3, [4] * 3),
    ("train only", _train_only, 0.2, ["class0", "class1", "class2"], [8] * 3, [2] * 3),
    ("flat", _flat, 0.25, ["class0", "class1", "class2"], [7] * 3, [3] * 3),  # 2.5 rounds up
    ("flat zip", _flat_zip, 0.5, ["class0", "class1", "class2"], [5] * 3, [5] * 3),
    ("file lists", _lists, None, ["0", "1", "2"], [10] * 3, [4] * 3),
])
def test_each_layout_loads_with_its_classes_and_counts(tmp_path, layout, build, fraction, classes, train, test):
    spec = build(tmp_path / "d")
    ds = load_dataset(str(spec), cache_dir=tmp_path / "cache", test_fraction=fraction)
    assert ds.classes == classes and ds.image_shape == (3, 16, 16)
    assert torch.bincount(ds.train_labels).tolist() == train and torch.bincount(ds.test_labels).tolist() == test
    assert ds.train_images.shape[0] == sum(train) and ds.test_images.shape[0] == sum(test)
    if layout == "flat":
        assert ds.skipped == {"not in a class folder": 1}


def test_data_info_shows_the_layout_and_the_hold_out(tmp_path, capsys):
    root = _flat(tmp_path / "d")
    assert main(["data", "info", "--data", str(root), "--test-fraction", "0.2", "--image-size", "20",
                 "--val-size", "3"]) == 0
    out = capsys.readouterr().out
    assert "<class>/ folders, test held out by --test-fraction (0.2 of every class, split seed 0)" in out
    assert "resized at decode to 20x20" in out and "image shape: 3x20x20" in out


def test_test_fraction_is_stratified_and_follows_the_split_seed(tmp_path):
    root = _train_only(tmp_path / "d")
    extra = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(9))
    (root / "train" / "class2" / "0010.png").write_bytes(_png(extra))

    def held_out(seed):
        ds = load_dataset(str(root), cache_dir=tmp_path / "cache", test_fraction=0.3, split_seed=seed)
        # make_image_folder's pixels are distinct per image: the test images name the files held out
        return ds, {bytes(img.flatten().tolist()[:64]) for img in ds.test_images}

    a, test_a = held_out(0)
    assert torch.bincount(a.test_labels).tolist() == [3, 3, 3]  # 11 * 0.3 = 3.3 -> 3
    assert torch.bincount(a.train_labels).tolist() == [7, 7, 8]
    train_a = {bytes(img.flatten().tolist()[:64]) for img in a.train_images}
    assert not train_a & test_a
    again, test_again = held_out(0)
    assert test_again == test_a and again.fingerprint == a.fingerprint
    other, test_other = held_out(1)
    assert test_other != test_a and other.fingerprint != a.fingerprint


def test_test_fraction_leaving_a_class_without_test_images_is_one_line(tmp_path, capsys):
    root = _train_only(tmp_path / "d")
    for p in sorted((root / "train" / "class1").iterdir())[1:]:
        p.unlink()  # class1: one image
    one_line_error(capsys, ["data", "info", "--data", str(root), "--test-fraction", "0.2"],
                   "leaves class 'class1' (1 images) with no test image")


def _cli_case(tmp_path: Path, case: str) -> tuple[list[str], str]:
    split = make_image_folder(tmp_path / "split", classes=2, per_class=4)
    train_only = _train_only(tmp_path / "train-only")
    flat = _flat(tmp_path / "flat")
    info = ["data", "info", "--data"]
    return {
        "size zero": (info + [str(split), "--image-size", "0"], "--image-size"),
        "size too large": (info + [str(split), "--image-size", "5000"], "from 16 to 4096"),
        "size not a number": (info + [str(split), "--image-size", "big"], "N or HxW"),
        "size 0x32": (info + [str(split), "--image-size", "0x32"], "from 16 to 4096"),
        "resize without size": (info + [str(split), "--resize", "stretch"], "--resize stretch needs --image-size"),
        "unknown resize": (info + [str(split), "--image-size", "32", "--resize", "squash"], "unknown resize"),
        "fraction 0": (info + [str(train_only), "--test-fraction", "0"], "test_fraction in the command line must be"),
        "fraction 1.5": (info + [str(train_only), "--test-fraction", "1.5"], "must be > 0 and < 1"),
        "fraction with a test split": (info + [str(split), "--test-fraction", "0.2"], "has its own test/ split"),
        "train/ alone, no fraction": (info + [str(train_only)], "no test/<class>/ folders; give --test-fraction"),
        "class folders, no fraction": (info + [str(flat)], "no test split; give --test-fraction"),
        "root without a list": (info + [str(split), "--root", str(tmp_path)], "--root is for file lists"),
        "cifar10 with a fraction": (info + ["cifar10", "--test-fraction", "0.1"], "CIFAR-10 has its own test split"),
        "empty folder": (info + [str(tmp_path / "split" / "train" / "class0"), "--test-fraction", "0.5"],
                         "no train/<class>/ folders and no class folders"),
    }[case]


@pytest.mark.parametrize("case", ["size zero", "size too large", "size not a number", "size 0x32",
                                  "resize without size", "unknown resize", "fraction 0", "fraction 1.5",
                                  "fraction with a test split", "train/ alone, no fraction",
                                  "class folders, no fraction", "root without a list", "cifar10 with a fraction",
                                  "empty folder"])
def test_bad_options_and_layouts_are_one_line(tmp_path, capsys, case):
    argv, needle = _cli_case(tmp_path, case)
    one_line_error(capsys, argv, needle)


def test_a_toml_image_size_out_of_range_is_one_line(tmp_path, capsys):
    root = make_image_folder(tmp_path / "d", classes=2, per_class=4)
    toml = tmp_path / "run.toml"
    toml.write_text(f'data = "{root}"\nimage_size = [8, 32]\nepochs = 1\n')
    one_line_error(capsys, ["train", "--config", str(toml), "--out", str(tmp_path / "run")], "from 16 to 4096")
    assert ImageSize("24 x 32") == [24, 32]


# --- file lists --------------------------------------------------------------------------------------


def test_file_list_with_a_classes_file_a_default_root_and_spaces_in_paths(tmp_path):
    spec = _lists(tmp_path / "d")
    folder = tmp_path / "d"
    (folder / "images" / "with space.png").write_bytes((folder / "images/train/class0/0000.png").read_bytes())
    (folder / "train.txt").write_text((folder / "train.txt").read_text() + "images/with space.png 0\n\n")
    (folder / "names.txt").write_text("/a/apple 0\n/b/banana 1\n/c/cherry 2\n")
    ds = load_dataset(spec + f",classes={folder / 'names.txt'}", cache_dir=tmp_path / "cache")
    assert ds.classes == ["/a/apple", "/b/banana", "/c/cherry"] and torch.bincount(ds.train_labels).tolist() == [11, 10, 10]
    assert torch.equal(ds.train_images[-1], ds.train_images[0])  # list order kept
    plain = load_dataset(spec, cache_dir=tmp_path / "cache")
    assert plain.classes == ["0", "1", "2"] and plain.fingerprint != ds.fingerprint


def test_one_file_list_with_a_test_fraction_and_an_explicit_root(tmp_path):
    folder = tmp_path / "d"
    _lists(folder)
    lines = [line.removeprefix("images/") for line in (folder / "train.txt").read_text().splitlines()]
    (tmp_path / "lt_train.txt").write_text("\n".join(lines))
    ds = load_dataset(f"list:{tmp_path / 'lt_train.txt'}", cache_dir=tmp_path / "cache", root=str(folder / "images"),
                      test_fraction=0.2)
    assert torch.bincount(ds.train_labels).tolist() == [8, 8, 8] and torch.bincount(ds.test_labels).tolist() == [2, 2, 2]
    assert ds.layout == sources.LAYOUT_LIST_ONLY


@pytest.mark.parametrize("edit,needle", [
    (lambda t: t.replace("images/train/class1/0003.png 1", "images/train/class1/gone.png 1"),
     "train.txt line 14: images/train/class1/gone.png not found in"),
    (lambda t: t.replace("images/train/class1/0003.png 1", "images/train/class1/0003.png"), "train.txt line 14: expected"),
    (lambda t: t.replace("images/train/class1/0003.png 1", "images/train/class1/0003.png one"),
     "train.txt line 14: the label 'one' is not a non-negative integer"),
    (lambda t: t.replace("images/train/class1/0003.png 1", "images/train/class1/0003.png -1"),
     "line 14: the label '-1' is not a non-negative integer"),
    (lambda t: t.replace("images/train/class1/0003.png 1", "../outside.png 1"), "line 14: ../outside.png is not a path inside --root"),
    (lambda t: t.replace(" 2\n", " 7\n"), "has no image of label 2"),
    (lambda t: "", "lists no images"),
])
def test_bad_training_lists_are_one_line_with_the_line_number(tmp_path, capsys, edit, needle):
    spec = _lists(tmp_path / "d")
    train = tmp_path / "d" / "train.txt"
    train.write_text(edit(train.read_text()))
    one_line_error(capsys, ["data", "info", "--data", spec], needle)


@pytest.mark.parametrize("case,needle", [
    ("unknown test label", "test.txt line 3: label 3 is not one of the training list's labels 0 to 2"),
    ("label outside the classes file", "label 2 is not one of the 2 classes of the classes file"),
    ("no test list", "names no test list; give list:TRAIN.txt,TEST.txt, or --test-fraction"),
    ("missing list", "cannot read"),
    ("bad spec", "cannot read the file-list spec"),
    ("root is a file", "is not a folder"),
])
def test_bad_file_list_specs_are_one_line(tmp_path, capsys, case, needle):
    spec = _lists(tmp_path / "d")
    folder = tmp_path / "d"
    argv = ["data", "info", "--data", spec]
    if case == "unknown test label":
        text = (folder / "test.txt").read_text().splitlines()
        text[2] = text[2][:-1] + "3"
        (folder / "test.txt").write_text("\n".join(text))
    elif case == "label outside the classes file":
        (folder / "names.txt").write_text("a\nb\n")
        argv[-1] = spec + f",classes={folder / 'names.txt'}"
    elif case == "no test list":
        argv[-1] = spec.split(",")[0]
    elif case == "missing list":
        argv[-1] = f"list:{folder / 'nope.txt'},{folder / 'test.txt'}"
    elif case == "bad spec":
        argv[-1] = "list:a.txt,b.txt,c.txt"
    elif case == "root is a file":
        argv += ["--root", str(folder / "train.txt")]
    one_line_error(capsys, argv, needle)


# --- runs and evaluate ------------------------------------------------------------------------------


def test_a_run_records_its_size_and_hold_out_and_evaluate_decodes_at_that_size(tmp_path, capsys):
    flat = _flat(tmp_path / "flat")
    (flat / "class0" / "wide.png").write_bytes(_png(_bands(32, 96)))
    out = tmp_path / "run"
    assert main(["train", "--data", str(flat), "--out", str(out), "--image-size", "24x20", "--resize", "stretch",
                 "--test-fraction", "0.25", "--epochs", "1", "--val-size", "3", "--quiet", "--threads", "1"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["image_size"] == [24, 20] and config["resize"] == "stretch" and config["test_fraction"] == 0.25
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["image_shape"] == [3, 24, 20] and summary["n_test"] == 9
    other = make_image_folder(tmp_path / "other", classes=3, per_class=2, size=40)
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(other)]) == 0
    record = json.loads((out / "evaluation-other.json").read_text())
    assert record["dataset"]["image_shape"] == [3, 24, 20] and record["n_test"] == 6
