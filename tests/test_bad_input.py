"""A catalogue of bad input fed to the CLI: each must end with exit code 2, one line on stderr,
no traceback, and no run directory that looks finished (summary.json)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_png

from longtail.cli import main
from tests.conftest import make_image_folder


def _good(tmp: Path) -> Path:
    return make_image_folder(tmp / "good", classes=2, per_class=6)


def _zip_of(tmp: Path, members: dict[str, bytes], name="d.zip") -> Path:
    path = tmp / name
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for member, data in members.items():
            z.writestr(member, data)
    return path


def _png(h=16, w=16, c=3) -> bytes:
    return encode_png(torch.zeros(c, h, w, dtype=torch.uint8)).numpy().tobytes()


def _tree_with(tmp: Path, edit) -> Path:
    root = make_image_folder(tmp / "tree", classes=2, per_class=4)
    edit(root)
    return root


def _toml(tmp: Path, text: str) -> Path:
    path = tmp / "bad.toml"
    path.write_text(text)
    return path


def _train(data, tmp, *extra):
    return ["train", "--data", str(data), "--out", str(tmp / "run"), "--epochs", "1", "--val-size", "2", "--quiet",
            *extra]


# (case id, builder tmp -> argv, expected words in the message)
CASES = [
    ("missing path", lambda t: _train(t / "nope", t), "not found"),
    ("broken symlink", lambda t: (t.joinpath("link").symlink_to(t / "gone"), _train(t / "link", t))[1], "not found"),
    ("empty directory", lambda t: (t.joinpath("empty").mkdir(), _train(t / "empty", t))[1], "no train/"),
    ("empty archive", lambda t: _train(_zip_of(t, {}), t), "no train/"),
    ("not an archive", lambda t: (t.joinpath("x.zip").write_text("hello"), _train(t / "x.zip", t))[1],
     "neither a folder nor a zip"),
    ("truncated image", lambda t: _train(_tree_with(t, lambda r: (r / "train/class0/0001.png").write_bytes(
        (r / "train/class0/0001.png").read_bytes()[:40])), t), "0001.png"),
    ("non-image file", lambda t: _train(_tree_with(t, lambda r: (r / "train/class1/notes.png").write_text(
        "just text")), t), "notes.png"),
    ("empty image file", lambda t: _train(_tree_with(t, lambda r: (r / "test/class1/zero.png").write_bytes(b"")), t),
     "zero.png"),
    ("mixed sizes", lambda t: _train(_tree_with(t, lambda r: (r / "train/class1/big.png").write_bytes(_png(20, 20))),
                                     t), "one size"),
    ("one class only", lambda t: _train(make_image_folder(t / "one", classes=1, per_class=3), t), "only one class"),
    ("empty class folder", lambda t: _train(_tree_with(t, lambda r: (r / "train/zebra").mkdir()), t), "is empty"),
    ("test class unknown to train", lambda t: _train(_tree_with(t, lambda r: shutil.copytree(
        r / "test/class0", r / "test/extra")), t), "test/ has classes"),
    ("unsafe zip member", lambda t: _train(_zip_of(t, {"train/a/../../evil.png": _png()}), t), "unsafe member"),
    ("absolute zip member", lambda t: _train(_zip_of(t, {"/train/a/x.png": _png()}), t), "unsafe member"),
    ("zip bomb member", lambda t: _train(_zip_of(t, {"train/a/x.png": b"\0" * (17 * 1024 * 1024),
                                                     "test/a/y.png": _png()}), t), "too large"),
    ("pixel bomb", lambda t: _train(_zip_of(t, {"train/a/x.png": _png(5000, 4000, 1), "train/b/x.png": _png(),
                                                "test/a/y.png": _png()}), t), "pixel limit"),
    ("zero samples after profile", lambda t: _train(_good(t), t, "--imbalance", "counts:0,5"), "no samples"),
    ("counts above available", lambda t: _train(_good(t), t, "--imbalance", "counts:5,500"), "only"),
    ("negative ratio", lambda t: _train(_good(t), t, "--imbalance", "step:-3"), "greater than 1"),
    ("zero ratio", lambda t: _train(_good(t), t, "--imbalance", "exponential:0"), "greater than 1"),
    ("ratio of one", lambda t: _train(_good(t), t, "--imbalance", "step:1"), "greater than 1"),
    ("ratio not a number", lambda t: _train(_good(t), t, "--imbalance", "step:ten"), "must be a number"),
    ("unknown profile", lambda t: _train(_good(t), t, "--imbalance", "zipf:3"), "unknown imbalance profile"),
    ("malformed toml", lambda t: _train(_good(t), t, "--config", str(_toml(t, "epochs = [1,"))), "not valid TOML"),
    ("unknown toml key", lambda t: _train(_good(t), t, "--config", str(_toml(t, "lr_max = 0.1\n"))), "'lr_max'"),
    ("wrong type in toml", lambda t: _train(_good(t), t, "--config", str(_toml(t, 'batch_size = "big"\n'))),
     "batch_size"),
    ("bool for int", lambda t: _train(_good(t), t, "--config", str(_toml(t, "epochs = true\n"))), "epochs"),
    ("zero epochs", lambda t: _train(_good(t), t, "--epochs", "0"), "epochs in the command line must be >= 1"),
    ("negative lr", lambda t: _train(_good(t), t, "--lr", "-0.1"), "lr in the command line must be > 0"),
    ("label smoothing >= 1", lambda t: _train(_good(t), t, "--label-smoothing", "1.0"), "must be >= 0 and < 1"),
    ("val size too large", lambda t: _train(_good(t), t, "--val-size", "999"), "val_size"),
    ("bad choice", lambda t: _train(_good(t), t, "--precision", "fp8"), "precision"),
    ("not an int flag", lambda t: _train(_good(t), t, "--batch-size", "many"), "expected an integer, got 'many'"),
    ("unknown flag", lambda t: _train(_good(t), t, "--turbo"), "unrecognized"),
    ("unknown recipe", lambda t: _train(_good(t), t, "--recipe", "warp"), "unknown recipe"),
    ("unknown loss", lambda t: _train(_good(t), t, "--loss", "hinge"), "unknown loss"),
    ("unknown rebalance", lambda t: _train(_good(t), t, "--rebalance", "smote"), "unknown rebalance"),
    ("unknown augmentation", lambda t: _train(_good(t), t, "--augment", "rotate"), "unknown augmentation"),
    ("mixup alpha of zero", lambda t: _train(_good(t), t, "--mix", "mixup", "--mix-alpha", "0"),
     "mix_alpha in the command line must be > 0"),
    ("out is a file", lambda t: (t.joinpath("f").write_text("x"), _train(_good(t), t)[:4] + [str(t / "f")]
                                 + ["--epochs", "1", "--val-size", "2", "--quiet"])[1], "not a folder"),
    ("missing config", lambda t: _train(_good(t), t, "--config", str(t / "none.toml")), "not found"),
    ("init not a checkpoint", lambda t: (t.joinpath("c.pt").write_text("junk"),
                                         _train(_good(t), t, "--init", str(t / "c.pt")))[1], "checkpoint"),
    ("cuda without a gpu", lambda t: _train(_good(t), t, "--device", "cuda"), "CUDA"),
    ("data info on missing path", lambda t: ["data", "info", "--data", str(t / "nope")], "not found"),
]


@pytest.mark.parametrize("name,build,needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, name, build, needle):
    if name == "cuda without a gpu" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    argv = build(tmp_path)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors (unknown flag, bad int) exit through SystemExit
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("longtail: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert needle in err, err
    assert not (tmp_path / "run" / "summary.json").exists()


def test_mixed_modes_load_as_rgb(tmp_path):
    from longtail.data.sources import load_dataset

    root = make_image_folder(tmp_path / "m", classes=2, per_class=3)
    (root / "train" / "class0" / "grey.png").write_bytes(_png(16, 16, 1))
    ds = load_dataset(str(root), cache_dir=tmp_path / "c")
    assert ds.image_shape == (3, 16, 16)
