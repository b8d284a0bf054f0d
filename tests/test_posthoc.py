"""Post-hoc logit adjustment with tau chosen on validation: the search against a hand-made
example, its tie rule, and a run whose summary, checkpoint and predictor carry the chosen tau."""

from __future__ import annotations

import json
import math

import pytest
import torch

import longtail
from longtail.cli import main
from longtail.data.loader import BatchLoader
from longtail.errors import LongtailError
from longtail.losses import LossContext, build_loss, log_prior
from longtail.metrics import balanced_accuracy
from longtail.runs import load_checkpoint
from longtail.tasks.posthoc import TAU_GRID, adjusted_confusions, choose_tau, search_tau
from tests.conftest import one_line_error

# Two classes with training counts 3 : 1, so -tau log pi moves class 1's logit up by tau log 3
# (1.0986 tau) relative to class 0's. Logits (0, d): class 1 is predicted once d + 1.0986 tau > 0.
COUNTS = torch.tensor([3, 1])
D = [-0.5, -1.0, -3.0, -2.0]  # class 1 from tau > 0.455, 0.910, 2.731, 1.820
LABELS = [0, 1, 0, 1]
# recall of class 0 (samples 0, 2) and class 1 (samples 1, 3), averaged, at tau = 0, 0.25, ..., 4:
# 0-0.25: 1 and 0; 0.5-0.75: 1/2 and 0; 1-1.75: 1/2, 1/2; 2-2.5: 1/2, 1; 2.75-4: 0, 1
HAND_CURVE = [0.5, 0.5, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]


def test_grid_is_zero_to_four_in_quarters():
    assert TAU_GRID == tuple(0.25 * i for i in range(17))


def test_balanced_accuracy_by_tau_matches_the_hand_curve_and_its_best_tau_is_chosen():
    logits = torch.tensor([[0.0, d] for d in D])
    cms = adjusted_confusions(logits, torch.tensor(LABELS), log_prior(COUNTS), TAU_GRID)
    curve = [balanced_accuracy(cm) for cm in cms]
    assert curve == pytest.approx(HAND_CURVE)
    assert choose_tau(TAU_GRID, curve) == 2.0  # 2, 2.25 and 2.5 tie at 0.75: the nearest to 1


def test_ties_go_to_the_tau_nearest_one_then_the_smaller():
    assert choose_tau([0.0, 0.5, 1.0, 1.5], [0.4, 0.4, 0.4, 0.4]) == 1.0
    assert choose_tau([0.0, 0.5, 1.5, 2.0], [0.1, 0.4, 0.4, 0.2]) == 0.5
    assert choose_tau([0.0, 3.0], [0.1, 0.2]) == 3.0


def _lookup_model(table: torch.Tensor):
    """A 'network' whose image i (one pixel of value i) gets logits table[i]."""
    def model(x):
        return table[(x * 255).round().long().view(-1)]

    model.train = model.eval = lambda *a: None
    model.training = False
    return model


def test_search_over_a_loader_finds_the_hand_tau():
    images = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1)
    loader = BatchLoader(images, torch.tensor(LABELS), 3, mean=[0.0], std=[1.0], channels_last=False)
    model = _lookup_model(torch.tensor([[0.0, d] for d in D]))
    record = search_tau(model, loader, "fp32", log_prior(COUNTS))
    assert record["tau"] == 2.0 and record["grid"] == list(TAU_GRID)
    assert record["val_balanced_acc"] == pytest.approx(HAND_CURVE)


def test_an_empty_validation_split_is_one_line():
    loader = BatchLoader(torch.zeros(0, 1, 1, 1, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), 3,
                         mean=[0.0], std=[1.0], channels_last=False)
    with pytest.raises(LongtailError, match="no validation images") as info:
        search_tau(_lookup_model(torch.zeros(1, 2)), loader, "fp32", log_prior(COUNTS))
    assert "\n" not in str(info.value)


def test_tau_val_is_a_word_of_the_posthoc_loss_only():
    module = build_loss("logit-adjust-posthoc", LossContext(COUNTS, params={"tau": "val"}))
    assert module.tau_from_validation and module.tau == 1.0  # epochs are scored with tau = 1 until then
    module.set_tau(2.5)
    assert module.posthoc_adjustment.tolist() == pytest.approx([2.5 * math.log(0.75), 2.5 * math.log(0.25)])
    with pytest.raises(LongtailError, match="tau must be a number or 'val', got 'value'"):
        build_loss("logit-adjust-posthoc", LossContext(COUNTS, params={"tau": "value"}))
    with pytest.raises(LongtailError, match="tau must be a number, got 'val'"):
        build_loss("logit-adjust", LossContext(COUNTS, params={"tau": "val"}))


def test_a_run_with_tau_from_validation_records_uses_and_stores_it(tiny_folder, tmp_path, capsys):
    root = tiny_folder(tmp_path / "d", classes=3, per_class=16)
    run = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(run), "--epochs", "1", "--batch-size", "8",
                 "--val-size", "9", "--imbalance", "counts:13,6,3", "--loss", "logit-adjust-posthoc",
                 "--loss-param", "tau=val", "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    record = summary["posthoc_tau"]
    assert record["grid"] == list(TAU_GRID) and record["tau"] in TAU_GRID
    assert record["val_balanced_acc"][TAU_GRID.index(record["tau"])] == max(record["val_balanced_acc"])
    adjustment = record["tau"] * log_prior(torch.tensor(summary["train_class_counts"]))
    assert torch.allclose(load_checkpoint(run / "checkpoint.pt")["logit_adjustment"], adjustment)
    assert torch.allclose(longtail.load_model(run).logit_adjustment, adjustment)  # what predict subtracts


def test_a_bad_tau_word_on_the_command_line_is_one_line(tiny_folder, tmp_path, capsys):
    root = tiny_folder(tmp_path / "d", classes=3, per_class=6)
    one_line_error(capsys, ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "1",
                            "--val-size", "3", "--quiet", "--loss", "logit-adjust-posthoc", "--loss-param",
                            "tau=best"], "tau must be a number or 'val'")
