"""Decoupled classifier learning (Kang et al. 2020): tau-normalisation, the tau search and LWS by
hand; cRT, LWS and tau-norm as stages of a tiny finished run, which must change the classifier
layer and nothing else (every other weight and BatchNorm buffer bitwise); refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from longtail.cli import main
from longtail.config import RECIPES, resolve_train_config
from longtail.decoupling import STAGES, TAU_GRID, ScaledLinear, search_tau, set_tau, tau_normalized
from longtail.errors import LongtailError
from longtail.runs import load_checkpoint
from tests.conftest import make_image_folder, one_line_error

FLAGS = ["--batch-size", "16", "--precision", "fp32", "--quiet"]
CLASSIFIER = ("fc2.weight", "fc2.bias")  # SeedCNN's last layer


# --- by hand ------------------------------------------------------------------------------------


def test_tau_normalisation_of_a_3_class_layer_by_hand():
    # class rows of norm 5, 2 and 1
    w = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0]])
    assert torch.equal(tau_normalized(w, 0.0), w)
    assert torch.allclose(tau_normalized(w, 1.0), torch.tensor([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]]))
    assert torch.allclose(tau_normalized(w, 0.5), torch.tensor([[3 / math.sqrt(5), 4 / math.sqrt(5)],
                                                                [0.0, math.sqrt(2)], [1.0, 0.0]]))
    assert torch.allclose(tau_normalized(w, 2.0), torch.tensor([[0.12, 0.16], [0.0, 0.5], [1.0, 0.0]]))
    assert torch.equal(tau_normalized(torch.zeros(2, 3), 1.0), torch.zeros(2, 3))  # no 0/0
    layer = nn.Linear(2, 3)
    set_tau(layer, w, 1.0)  # Kang et al.'s tau_norm.py scores x . w_j: the bias is dropped
    assert torch.allclose(layer.weight, tau_normalized(w, 1.0)) and torch.equal(layer.bias, torch.zeros(3))


def test_tau_search_chooses_the_best_tau_on_validation_by_hand():
    # w_0 = (2, 0), w_1 = (0, 1): logits 2^(1 - tau) x_0 and x_1. Sample (1, 0.9) of class 0 is right
    # while 2^(1 - tau) > 0.9, i.e. tau < 1.152; sample (1, 1.5) of class 1 while 2^(1 - tau) < 1.5,
    # i.e. tau > 0.415. Both (balanced accuracy 1) for tau 0.5 ... 1.1; the smallest wins ties.
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        layer.bias.copy_(torch.tensor([5.0, 0.0]))  # dropped: with it class 0 would always win
    x, y = torch.tensor([[1.0, 0.9], [1.0, 1.5]]), torch.tensor([0, 1])

    def score():
        right = (layer(x).argmax(dim=1) == y).float()  # one sample per class: recall = right
        return float(right.mean()), {"val_balanced_acc": float(right.mean())}

    best, rows = search_tau(layer, score)
    assert TAU_GRID[best] == 0.5 and len(rows) == 21 and [r["tau"] for r in rows] == list(TAU_GRID)
    assert [r["tau"] for r in rows if r["val_balanced_acc"] == 1.0] == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
    assert torch.allclose(layer.weight, torch.tensor([[2 / math.sqrt(2), 0.0], [0.0, 1.0]]))  # left at 0.5


def test_lws_scales_the_biased_logits_and_folds_into_one_linear():
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        layer.bias.copy_(torch.tensor([1.0, -1.0]))
    scaled = ScaledLinear(layer)
    with torch.no_grad():
        scaled.scale.copy_(torch.tensor([2.0, 0.5]))
    x = torch.tensor([[1.0, 1.0]])
    assert torch.equal(scaled(x), torch.tensor([[2.0 * 4.0, 0.5 * 6.0]]))  # f_j (w_j . x + b_j)
    folded = scaled.folded()
    assert type(folded) is nn.Linear and torch.equal(folded(x), torch.tensor([[8.0, 3.0]]))
    assert torch.equal(folded.weight, torch.tensor([[2.0, 4.0], [1.5, 2.0]]))
    assert torch.equal(folded.bias, torch.tensor([2.0, -0.5]))
    # a folded checkpoint (what a finished LWS run saved) loads back as scales of 1 on those weights
    model = nn.Sequential(ScaledLinear(nn.Linear(2, 2)))
    model.load_state_dict(nn.Sequential(folded).state_dict())
    assert torch.equal(model[0].scale, torch.ones(2)) and torch.equal(model(x), torch.tensor([[8.0, 3.0]]))


def test_a_cosine_head_or_a_conv_classifier_has_no_weights_to_rescale():
    with pytest.raises(LongtailError, match="cosine head normalises"):
        STAGES["tau-norm"].check("cosine", nn.Linear(4, 3), "fc2")
    with pytest.raises(LongtailError, match="Conv2d"):
        STAGES["lws"].check("linear", nn.Conv2d(4, 3, 1), "classifier.1")
    STAGES["crt"].check("cosine", nn.Conv2d(4, 3, 1), "classifier.1")  # cRT re-initialises any layer


# --- stages of a finished run -------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished tiny SeedCNN run on an imbalanced 3-class folder: (image folder, run folder)."""
    root = tmp_path_factory.mktemp("decouple")
    folder = make_image_folder(root / "img", classes=3, per_class=20, size=16)
    assert main(["train", "--data", str(folder), "--out", str(root / "base"), "--epochs", "1",
                 "--imbalance", "exponential:4", *FLAGS]) == 0
    return folder, root / "base"


def _stage(source, stage: str, out, *extra: str) -> tuple[dict, dict, dict]:
    """Run ``stage`` on the source run: (source weights, stage weights, stage summary)."""
    _, base = source
    assert main(["train", "--stage", stage, "--init", str(base / "checkpoint.pt"), "--out", str(out),
                 "--epochs", "1", *FLAGS, *extra]) == 0
    before, after = load_checkpoint(base / "checkpoint.pt")["model"], load_checkpoint(out / "checkpoint.pt")["model"]
    return before, after, json.loads((out / "summary.json").read_text())


def _assert_only_the_classifier_changed(before: dict, after: dict) -> None:
    assert set(before) == set(after) and "bn.running_mean" in before and "bn.num_batches_tracked" in before
    for key in before:
        if key not in CLASSIFIER:
            assert torch.equal(before[key], after[key]), key  # weights and BatchNorm buffers, bitwise


def test_crt_retrains_only_the_reinitialised_classifier(source, tmp_path):
    before, after, summary = _stage(source, "crt", tmp_path / "crt")
    _assert_only_the_classifier_changed(before, after)
    assert not torch.equal(before["fc2.weight"], after["fc2.weight"])
    assert summary["stage"]["trained"] == list(CLASSIFIER) and summary["stage"]["method"] == "crt"
    config = json.loads((tmp_path / "crt" / "config.json").read_text())
    # the source's data and network, Kang et al.'s recipe with class-aware sampling
    assert config["imbalance"] == "exponential:4" and config["model"] == "seed-cnn"
    assert config["recipe"] == "decouple" and config["rebalance"] == "class-aware"
    for key in ("test_acc", "test_balanced_acc", "test_macro_f1", "test_ece", "test_acc_by_class_size",
                "per_class_acc", "kept_indices_hash", "best_test_acc_over_epochs"):
        assert key in summary, key


def test_lws_learns_only_per_class_scales_folded_into_the_classifier(source, tmp_path):
    folder, _ = source
    before, after, summary = _stage(source, "lws", tmp_path / "lws")
    _assert_only_the_classifier_changed(before, after)
    scales = torch.tensor(summary["stage"]["scales"])
    assert summary["stage"]["trained"] == ["fc2.scale"] and not torch.equal(scales, torch.ones(3))
    assert torch.equal(after["fc2.weight"], before["fc2.weight"] * scales[:, None])
    assert torch.equal(after["fc2.bias"], before["fc2.bias"] * scales)
    # an ordinary classifier run: evaluate rebuilds it and reproduces its test figures
    assert main(["evaluate", str(tmp_path / "lws"), "--data", str(folder)]) == 0
    record = json.loads((tmp_path / "lws" / "evaluation-img.json").read_text())
    assert record["confusion"] == summary["confusion"]


def test_tau_norm_trains_nothing_and_records_its_choice(source, tmp_path):
    before, after, summary = _stage(source, "tau-norm", tmp_path / "tau")
    _assert_only_the_classifier_changed(before, after)
    tau = summary["tau_norm"]["tau"]
    curve = summary["tau_norm"]["curve"]
    assert [r["tau"] for r in curve] == list(TAU_GRID) and summary["tau_norm"]["selected_on"] == "val_balanced_acc"
    assert tau == next(r["tau"] for r in curve if r["val_balanced_acc"] == max(c["val_balanced_acc"] for c in curve))
    assert torch.equal(after["fc2.weight"], tau_normalized(before["fc2.weight"], tau))
    assert torch.equal(after["fc2.bias"], torch.zeros(3))
    assert summary["epochs"] == 0 and summary["stage"]["trained"] == [] and "best_test_acc_over_epochs" not in summary
    assert (tmp_path / "tau" / "metrics.jsonl").read_text() == ""


def test_an_unset_recipe_is_kang_et_als_with_a_stage_and_flags_still_win(source):
    _, base = source
    cfg = resolve_train_config({"stage": "lws", "init": str(base / "checkpoint.pt"), "epochs": 5})
    assert cfg.recipe == "decouple" and cfg.epochs == 5 and cfg.lr == RECIPES["decouple"]["lr"]
    assert cfg.imbalance == "exponential:4" and cfg.rebalance == "class-aware" and cfg.task == "classifier-stage"
    assert resolve_train_config({"stage": "crt", "init": str(base / "checkpoint.pt"), "recipe": "fast"}).epochs == 20
    assert resolve_train_config({}).recipe == "fast" and resolve_train_config({}).task == "classify"


# --- refusals: one line, exit 2 -----------------------------------------------------------------


@pytest.fixture(scope="module")
def pretraining_run(source, tmp_path_factory):
    folder, _ = source
    out = tmp_path_factory.mktemp("pre") / "jigsaw"
    assert main(["pretrain", "--data", str(folder), "--out", str(out), "--epochs", "1", *FLAGS]) == 0
    return out


def test_a_stage_needs_a_finished_classifier_run(source, pretraining_run, tmp_path, capsys):
    _, base = source
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.json", "checkpoint.pt", "metrics.jsonl"):
        (unfinished / name).write_bytes((base / name).read_bytes())
    out = ["--out", str(tmp_path / "stage")]
    one_line_error(capsys, ["train", "--stage", "crt", "--init", str(unfinished / "checkpoint.pt"), *out],
                   "the run has not finished")
    one_line_error(capsys, ["train", "--stage", "lws", "--init", str(pretraining_run / "checkpoint.pt"), *out],
                   "it is a jigsaw run")
    one_line_error(capsys, ["train", "--stage", "tau-norm", *out], "needs --init RUN/checkpoint.pt")
    one_line_error(capsys, ["train", "--stage", "crt", "--init", str(base), *out], "give its RUN/checkpoint.pt")
    assert not (tmp_path / "stage").exists()


@pytest.mark.parametrize("flags, needle", [
    (["--imbalance", "exponential:5"], "made with imbalance='exponential:4'"),
    (["--model", "resnet32"], "made with model='seed-cnn'"),
    (["--transfer", "freeze"], "apply to --init without --stage"),
])
def test_a_stage_keeps_the_source_runs_data_and_network(source, tmp_path, capsys, flags, needle):
    _, base = source
    one_line_error(capsys, ["train", "--stage", "crt", "--init", str(base / "checkpoint.pt"),
                            "--out", str(tmp_path / "stage"), *flags], needle)


def test_a_stage_refuses_other_data(source, tmp_path, capsys):
    _, base = source
    other = make_image_folder(tmp_path / "other", classes=3, per_class=20, size=16, seed=1)
    one_line_error(capsys, ["train", "--stage", "crt", "--init", str(base / "checkpoint.pt"), "--data", str(other),
                            "--out", str(tmp_path / "stage"), *FLAGS], "trained on other data")
