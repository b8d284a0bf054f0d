"""Inference from a finished run: predict, evaluate, export, load_model.

One tiny real run (2,000 CIFAR-10 training images, 500 test images, 1 epoch) with post-hoc logit
adjustment on an imbalanced subset, so the adjustment is part of what must be reproduced; the
run's own test images are written out as PNG (lossless) and fed back through the CLI.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_png

import longtail
from longtail.cli import main
from longtail.config import resolve_pretrain_config, resolve_train_config
from longtail.data.prepare import prepare_data
from longtail.run import run as run_training
from tests.conftest import make_image_folder, one_line_error

SETTINGS = dict(limit_train=2000, val_size=500, limit_test=500, epochs=1, quiet=True, loss="logit-adjust-posthoc",
                imbalance="exponential:10")


def _png(img: torch.Tensor) -> bytes:
    return encode_png(img).numpy().tobytes()


@pytest.fixture(scope="module")
def trained(cifar, cifar_zip, tmp_path_factory):
    """(run folder, summary, the run's test images and labels as the run chose them)."""
    root = tmp_path_factory.mktemp("infer")
    cfg = resolve_train_config({"data": str(cifar_zip), "out": str(root / "run"), **SETTINGS})
    summary = run_training(cfg, cifar)
    data = prepare_data(cfg, cifar)  # the run's own code path picks the stratified limit_test subset
    return root / "run", summary, data.test_images, data.test_labels


@pytest.fixture(scope="module")
def test_pngs(trained, tmp_path_factory):
    """The run's test images as PNG files named by position, so sorted order is the run's order."""
    _, _, images, labels = trained
    folder = tmp_path_factory.mktemp("pngs") / "images"
    folder.mkdir()
    for i, img in enumerate(images):
        (folder / f"{i:04d}.png").write_bytes(_png(img))
    return folder, labels


def _predict(argv: list[str], capsys) -> list[list[str]]:
    assert main(["predict", *argv]) == 0
    return list(csv.reader(capsys.readouterr().out.splitlines()))


def test_predictions_reproduce_the_runs_test_accuracy_exactly(trained, test_pngs, tmp_path, capsys):
    run, summary, _, _ = trained
    folder, labels = test_pngs
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run), str(folder), "--top-k", "3", "--out", str(out)]) == 0
    assert "500 images" in capsys.readouterr().out
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows[0] == ["path", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3"]
    rows = rows[1:]
    assert [Path(r[0]).name for r in rows] == [f"{i:04d}.png" for i in range(500)]
    classes = summary["classes"]
    correct = sum(classes.index(r[1]) == int(y) for r, y in zip(rows, labels))
    assert correct / len(rows) == summary["test_acc"]  # exact: same decode, preprocessing, precision, adjustment
    for r in rows:
        probs = [float(p) for p in r[2::2]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5 and len(set(r[1::2])) == 3


def test_the_adjustment_is_part_of_the_prediction(trained):
    run, summary, images, _ = trained
    model = longtail.load_model(run)
    assert model.logit_adjustment.abs().sum() > 0
    with torch.no_grad():
        raw, adjusted = model.raw_logits(images).argmax(1), model(images).argmax(1)
    assert not torch.equal(raw, adjusted)  # without it, other predictions (and not the run's figures)


def test_evaluate_gives_every_test_figure_of_the_summary(trained, tmp_path, capsys):
    run, summary, images, labels = trained
    # A labelled folder whose test split is the run's test set: every figure must come out the same.
    data = tmp_path / "held-out"
    for j, name in enumerate(summary["classes"]):
        (data / "train" / name).mkdir(parents=True)
        (data / "train" / name / "0.png").write_bytes(_png(images[0]))
        (data / "test" / name).mkdir(parents=True)
    for i, (img, y) in enumerate(zip(images, labels)):
        (data / "test" / summary["classes"][int(y)] / f"{i:04d}.png").write_bytes(_png(img))
    assert main(["evaluate", str(run), "--data", str(data)]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "evaluation-held-out.json" in line and f"{summary['test_acc']:.4f}" in line
    record = json.loads((run / "evaluation-held-out.json").read_text())
    for key in ("test_acc", "test_balanced_acc", "test_macro_f1", "per_class_acc", "confusion", "classes"):
        assert record[key] == summary[key], key
    assert record["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert record["n_test"] == 500 and record["split"] == "test" and record["logit_adjusted"] is True
    assert main(["evaluate", str(run), "--data", str(data)]) == 0  # its own file: replaced
    # --precision fp32: the record says so, and its confusion is that of load_model's fp32 predictions
    from longtail.metrics import confusion_matrix

    assert main(["evaluate", str(run), "--data", str(data), "--precision", "fp32"]) == 0
    record = json.loads((run / "evaluation-held-out.json").read_text())
    with torch.no_grad():
        predicted = longtail.load_model(run, precision="fp32")(images).argmax(dim=1)
    assert record["precision"] == "fp32"
    assert record["confusion"] == confusion_matrix(labels, predicted, len(summary["classes"])).tolist()


def test_load_model_in_five_lines_and_its_input_convention(trained, test_pngs):
    run, summary, images, _ = trained
    folder, _ = test_pngs
    # docs/inference.md's five lines
    import longtail
    from torchvision.io import decode_image
    model = longtail.load_model(run)
    probs = model(decode_image(str(folder / "0000.png")).unsqueeze(0)).softmax(dim=1)
    print(model.classes[int(probs.argmax())], float(probs.max()))

    assert model.classes == summary["classes"] and not model.training
    assert model.precision == json.loads((run / "config.json").read_text())["precision_used"]
    batch = images[:16]
    with torch.no_grad():
        from_uint8 = model(batch)
        assert torch.equal(from_uint8, model(batch.float() / 255))  # uint8 in [0, 255] == float in [0, 1]
        grey = batch[:, :1]
        assert torch.equal(model(grey), model(grey.expand(-1, 3, -1, -1)))  # grey as RGB, as datasets load it
    with pytest.raises(ValueError, match="32x32"):
        model(torch.zeros(1, 3, 20, 20, dtype=torch.uint8))


def test_import_longtail_stays_light():
    code = "import sys, longtail; assert 'torch' not in sys.modules; assert callable(longtail.load_model)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_run_with_an_image_size_resizes_inside_the_model(trained, tmp_path):
    run, _, images, _ = trained
    resized = tmp_path / "resized"
    shutil.copytree(run, resized)
    config = json.loads((resized / "config.json").read_text())
    (resized / "config.json").write_text(json.dumps({**config, "image_size": [32, 32]}))
    model = longtail.load_model(resized)
    big = torch.nn.functional.interpolate(images[:8].float(), scale_factor=2, mode="nearest").to(torch.uint8)
    with torch.no_grad():
        assert torch.equal(model(images[:8]), longtail.load_model(run)(images[:8]))  # right size: untouched
        expected = torch.nn.functional.interpolate(big.float() / 255, size=[32, 32], mode="bilinear",
                                                   antialias=True, align_corners=False)
        assert torch.equal(model(big), model(expected))
    assert model.preprocess.resize and not longtail.load_model(run).preprocess.resize


def test_predict_resizes_only_when_the_run_has_an_image_size(trained, tmp_path, capsys):
    run, _, images, _ = trained
    photo = tmp_path / "big.png"
    photo.write_bytes(_png(torch.nn.functional.interpolate(images[:1].float(), size=(48, 40)).to(torch.uint8)[0]))
    one_line_error(capsys, ["predict", str(run), str(photo)], "big.png is 40x48 px")
    resized = tmp_path / "resized"
    shutil.copytree(run, resized)
    config = json.loads((resized / "config.json").read_text())
    (resized / "config.json").write_text(json.dumps({**config, "image_size": 32}))
    rows = _predict([str(resized), str(photo), "--top-k", "99"], capsys)
    assert len(rows) == 2 and len(rows[1]) == 1 + 2 * 10  # --top-k above the class count: every class


def test_torchscript_export_equals_the_runs_model(trained, tmp_path, capsys):
    run, summary, images, _ = trained
    out = tmp_path / "model.pt"
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    with pytest.warns(FutureWarning):  # torch.jit is deprecated upstream; it still loads
        exported = torch.jit.load(str(out))
    reference = longtail.load_model(run, precision="fp32")  # exports compute in float32
    batch = images[:64]
    with torch.no_grad():
        expected = reference(batch)
        assert torch.equal(exported(batch), expected)
        assert torch.equal(exported(batch.float() / 255), expected)
        # any batch size (the kernels' low bits depend on it, in eager mode as well)
        assert torch.equal(exported(batch[:1]), reference(batch[:1]))
    assert list(exported.classes) == summary["classes"]
    with zipfile.ZipFile(out) as z:
        mark = json.loads(z.read(next(n for n in z.namelist() if n.endswith("extra/longtail.json"))))
    assert mark["classes"] == summary["classes"] and mark["image_shape"] == [3, 32, 32]
    assert main(["export", str(run), "--format", "torchscript", "--out", str(out)]) == 0  # its own file: replaced


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None,
                    reason="onnxruntime/onnxscript not installed (pip install 'longtail[onnx]')")
def test_onnx_export_equals_the_runs_model(trained, tmp_path, capsys):
    import onnx
    import onnxruntime

    run, summary, images, _ = trained
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    session = onnxruntime.InferenceSession(str(out))
    batch = images[:64]
    got = torch.from_numpy(session.run(None, {"images": batch.numpy()})[0])
    with torch.no_grad():
        expected = longtail.load_model(run, precision="fp32")(batch)
    # another runtime's kernels: the same predictions, logits equal to float32 rounding
    assert torch.equal(got.argmax(1), expected.argmax(1))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["longtail.json"])["classes"] == summary["classes"]


# --- bad input: one line, exit 2, nothing that looks finished ---------------------------------------


@pytest.fixture(scope="module")
def jigsaw_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("jig")
    data = make_image_folder(root / "data", classes=2, per_class=6)
    cfg = resolve_pretrain_config({"data": str(data), "out": str(root / "run"), "epochs": 1, "val_size": 2,
                                   "batch_size": 4, "quiet": True})
    run_training(cfg)
    return root / "run"


def _unfinished(run: Path, tmp: Path) -> Path:
    copy = tmp / "unfinished"
    shutil.copytree(run, copy)
    (copy / "summary.json").unlink()
    return copy


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
@pytest.mark.parametrize("case, needle", [("unfinished", "has not finished"), ("jigsaw", "jigsaw run"),
                                          ("plain folder", "not a run folder"), ("missing", "run folder not found"),
                                          ("file", "not a run folder")])
def test_only_finished_classifier_runs_are_used(trained, jigsaw_run, test_pngs, tmp_path, capsys, command, case,
                                                 needle):
    run = trained[0]
    target = {"unfinished": lambda: _unfinished(run, tmp_path), "jigsaw": lambda: jigsaw_run,
              "plain folder": lambda: tmp_path, "missing": lambda: tmp_path / "nope",
              "file": lambda: test_pngs[0] / "0000.png"}[case]()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rest = {"predict": [str(test_pngs[0] / "0000.png")], "evaluate": ["--data", str(tmp_path)],
            "export": ["--format", "torchscript"]}[command]
    one_line_error(capsys, [command, str(target), *rest], needle)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_evaluate_names_the_class_difference(trained, tmp_path, capsys):
    run, summary, _, _ = trained
    names = [c for c in summary["classes"] if c not in ("cat", "truck")] + ["zebra"]
    data = make_image_folder(tmp_path / "other", class_names=sorted(names), per_class=2, size=32)
    err = one_line_error(capsys, ["evaluate", str(run), "--data", str(data)], "missing cat, truck; extra zebra")
    assert "other" in err and not (run / "evaluation-other.json").exists()


def test_export_refusals(trained, tmp_path, capsys, monkeypatch):
    run = trained[0]
    one_line_error(capsys, ["export", str(run), "--format", "tflite"], "unknown export format 'tflite'")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError, as when not installed
    err = one_line_error(capsys, ["export", str(run), "--format", "onnx"], "pip install 'longtail[onnx]'")
    assert "optional extra" in err and not (run / "model.onnx").exists()
    foreign = tmp_path / "mine.pt"
    foreign.write_bytes(b"someone else's file")
    one_line_error(capsys, ["export", str(run), "--format", "torchscript", "--out", str(foreign)], "not a model")
    assert foreign.read_bytes() == b"someone else's file"


def test_predict_refusals(trained, test_pngs, tmp_path, capsys):
    run = trained[0]
    good = str(test_pngs[0] / "0000.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes((test_pngs[0] / "0001.png").read_bytes()[:40])
    out = tmp_path / "preds.csv"
    one_line_error(capsys, ["predict", str(run), good, str(broken), "--out", str(out)], "broken.png")
    assert not out.exists()  # no partial CSV
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(capsys, ["predict", str(run), str(tmp_path / "notes.txt")], "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(capsys, ["predict", str(run), str(empty)], "no image files in folder")
    one_line_error(capsys, ["predict", str(run), str(tmp_path / "gone.png")], "not found: ")
    one_line_error(capsys, ["predict", str(run), good, "--top-k", "0"], "--top-k must be at least 1")
    mine = tmp_path / "mine.csv"
    mine.write_text("a,b\n1,2\n")
    one_line_error(capsys, ["predict", str(run), good, "--out", str(mine)], "not a predictions file")
    assert mine.read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("mode", ["crop", "stretch"])
def test_inputs_of_another_size_are_resized_as_the_dataset_was(mode):
    from longtail.data.resize import resize_image
    from longtail.inference.model import Preprocess

    g = torch.Generator().manual_seed(0)
    wide = torch.randint(0, 256, (1, 3, 24, 48), dtype=torch.uint8, generator=g)  # 48 wide, 24 tall
    pre = Preprocess([0.0] * 3, [1.0] * 3, (16, 16), True, 3, crop=mode == "crop")
    got = pre(wide).contiguous()
    want = resize_image(wide[0], (16, 16), mode).float().div(255)  # the dataset's uint8 decode-time resize
    # float vs uint8 rounding: within one grey level; a crop taken as a stretch (or off-centre) is far
    assert (got[0] - want).abs().max() <= 1.5 / 255


def test_an_ldam_runs_probabilities_are_those_of_its_scaled_cosines(cifar, cifar_zip, tmp_path):
    """LDAM trains s x cosine as the logits (s = 30): the run's ECE, load_model, predict and export
    use them too; softmax of bare cosines in [-1, 1] would be near uniform whatever the network learnt."""
    from longtail.device import autocast
    from longtail.metrics import calibration_bins, expected_calibration_error

    cfg = resolve_train_config({"data": str(cifar_zip), "out": str(tmp_path / "ldam"), **SETTINGS,
                                "loss": "ldam-drw", "head": "cosine"})
    summary = run_training(cfg, cifar)
    data = prepare_data(cfg, cifar)
    model = longtail.load_model(tmp_path / "ldam")
    assert float(model.logit_scale) == 30.0
    with torch.no_grad():
        x = model.preprocess(data.test_images)
        with autocast(x.device, model.precision):
            bare = model.net(x).float()
        assert bare.abs().max() <= 1 + 1e-5  # the network's outputs are cosines
        probs = model.probabilities(data.test_images)
    assert torch.allclose(probs, torch.softmax(30 * bare, dim=1), atol=1e-6)
    conf, pred = probs.max(dim=1)
    ece = expected_calibration_error(calibration_bins(conf, pred == data.test_labels, cfg.ece_bins))
    assert ece == pytest.approx(summary["test_ece"], abs=1e-6)
    exported = tmp_path / "ldam.pt"
    assert main(["export", str(tmp_path / "ldam"), "--format", "torchscript", "--out", str(exported)]) == 0
    with pytest.warns(FutureWarning):
        scripted = torch.jit.load(str(exported))
    with torch.no_grad():
        assert torch.equal(scripted(data.test_images[:8]), longtail.load_model(tmp_path / "ldam", precision="fp32")(
            data.test_images[:8]))
        assert scripted(data.test_images[:8]).abs().max() > 1.5  # scaled, not bare cosines


@pytest.mark.parametrize("scale", [0.0, -30.0, float("nan"), "30", True])
def test_a_checkpoint_with_a_bad_logit_scale_is_one_line(trained, test_pngs, tmp_path, capsys, scale):
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy)
    checkpoint = torch.load(copy / "checkpoint.pt", weights_only=False)
    torch.save({**checkpoint, "logit_scale": scale}, copy / "checkpoint.pt")
    one_line_error(capsys, ["predict", str(copy), str(test_pngs[0] / "0000.png")], "not a positive number")
