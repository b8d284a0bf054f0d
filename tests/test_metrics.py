import math

import pytest
import torch

from longtail.metrics import (accuracy, balanced_accuracy, classification_report, confusion_matrix, macro_f1,
                              per_class_accuracy)

# 3 classes; rows = true, cols = predicted, worked by hand:
#   true 0: 3 samples -> predicted 0,0,1
#   true 1: 2 samples -> predicted 1,2
#   true 2: 1 sample  -> predicted 2
TARGETS = torch.tensor([0, 0, 0, 1, 1, 2])
PREDS = torch.tensor([0, 0, 1, 1, 2, 2])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(TARGETS, PREDS, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_metrics_by_hand():
    cm = confusion_matrix(TARGETS, PREDS, 3)
    assert accuracy(cm) == 4 / 6
    assert per_class_accuracy(cm) == [2 / 3, 1 / 2, 1.0]
    assert math.isclose(balanced_accuracy(cm), (2 / 3 + 1 / 2 + 1) / 3)
    # F1 per class: c0 tp2 fp0 fn1 -> 4/5; c1 tp1 fp1 fn1 -> 2/4; c2 tp1 fp1 fn0 -> 2/3
    assert math.isclose(macro_f1(cm), (4 / 5 + 1 / 2 + 2 / 3) / 3)


def test_absent_class_is_none_and_excluded_from_balanced():
    cm = confusion_matrix(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), 3)
    assert per_class_accuracy(cm)[2] is None
    assert math.isclose(balanced_accuracy(cm), (1 / 2 + 1) / 2)


def test_confusion_sums_across_batches():
    whole = confusion_matrix(TARGETS, PREDS, 3)
    parts = confusion_matrix(TARGETS[:2], PREDS[:2], 3) + confusion_matrix(TARGETS[2:], PREDS[2:], 3)
    assert torch.equal(whole, parts)
    report = classification_report(whole)
    assert report["confusion"] == whole.tolist() and report["acc"] == 4 / 6


def test_a_class_never_predicted_right_counts_as_zero_and_an_absent_one_not_at_all():
    # 5 classes, worked by hand: class 1 is never predicted right, class 3 never occurs,
    # class 4 is predicted once but is never a target
    targets = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 0, 2, 4, 2, 0])
    cm = confusion_matrix(targets, preds, 5)
    assert cm.tolist() == [[2, 1, 0, 0, 0], [0, 0, 1, 0, 1], [1, 0, 1, 0, 0], [0] * 5, [0] * 5]
    assert accuracy(cm) == 3 / 7
    assert per_class_accuracy(cm) == [2 / 3, 0.0, 0.5, None, None]
    # recall over the classes with targets: (2/3 + 0 + 1/2) / 3
    assert math.isclose(balanced_accuracy(cm), 7 / 18)
    # F1 = 2tp / (2tp + fp + fn): c0 4/6, c1 0/3, c2 2/4, c3 no samples and no predictions (left out),
    # c4 0/1 (predicted, so it counts): (2/3 + 0 + 1/2 + 0) / 4
    assert math.isclose(macro_f1(cm), 7 / 24)


def test_balanced_accuracy_is_recall_not_precision():
    # true 0: 4 samples, all right; true 1: 4 samples, 3 predicted 0. Recall 1 and 1/4; precision 4/7 and 1
    cm = confusion_matrix(torch.tensor([0] * 4 + [1] * 4), torch.tensor([0] * 4 + [0, 0, 0, 1]), 2)
    assert math.isclose(balanced_accuracy(cm), (1 + 1 / 4) / 2)
    assert math.isclose(macro_f1(cm), (2 * 4 / (8 + 3) + 2 / (2 + 3)) / 2)


def test_expected_calibration_error_by_hand():
    from longtail.metrics import calibration_bins, expected_calibration_error

    # 5 bins of width 0.2, binned by hand ((lo, hi]):
    #   (0.2, 0.4]: 0.3 wrong, 0.4 right        -> n 2, acc 1/2, conf 0.35, gap 0.15
    #   (0.6, 0.8]: 0.7 right, 0.8 right, 0.65 wrong -> n 3, acc 2/3, conf 0.7166..., gap 0.05
    #   (0.8, 1.0]: 0.9 right, 1.0 right         -> n 2, acc 1, conf 0.95, gap 0.05
    conf = torch.tensor([0.3, 0.4, 0.7, 0.8, 0.65, 0.9, 1.0])
    correct = torch.tensor([0, 1, 1, 1, 0, 1, 1])
    bins = calibration_bins(conf, correct, 5)
    assert bins[0].tolist() == [0, 2, 0, 3, 2]  # 0.4 and 0.8 fall in the bin they close
    want = (2 * 0.15 + 3 * abs(2 / 3 - 2.15 / 3) + 2 * 0.05) / 7
    assert math.isclose(expected_calibration_error(bins), want, rel_tol=1e-6)
    # sums: two halves binned apart add up to the whole
    halves = calibration_bins(conf[:3], correct[:3], 5) + calibration_bins(conf[3:], correct[3:], 5)
    assert torch.allclose(halves, bins)
    assert expected_calibration_error(calibration_bins(conf, correct)) > 0  # 15 bins by default
    assert expected_calibration_error(torch.zeros(3, 15)) == 0.0


def test_accuracy_by_class_size_groups_and_cifar_thirds():
    from longtail.metrics import accuracy_by_class_size, accuracy_by_thirds

    counts = [500, 101, 100, 20, 19, 5]
    acc = [0.9, 0.8, 0.6, 0.4, 0.2, None]
    assert accuracy_by_class_size(counts, acc) == pytest.approx({"many": 0.85, "medium": 0.5, "few": 0.2})
    assert accuracy_by_class_size([500, 200], [0.5, 0.7]) == {"many": 0.6}  # only non-empty groups
    assert accuracy_by_thirds(counts, acc) is None
    # CIFAR-10-LT at ratio 100 with 4,500 per class, classes listed out of order
    counts10 = [45, 4500, 2697, 1617, 969, 581, 348, 208, 125, 75]
    acc10 = [0.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    got = accuracy_by_thirds(counts10, acc10)
    assert got == pytest.approx({"head": 0.8, "middle": 0.45, "tail": 0.1})


def test_a_classifier_summary_has_calibration_and_class_size_groups(tiny_folder, tmp_path):
    """A one-epoch run end to end, with cb-focal (its bias init runs) and DRS from epoch 1 of 2."""
    from longtail.config import resolve_train_config
    from longtail.run import run as run_training

    data = tiny_folder(tmp_path / "g", classes=3, per_class=20, size=(16, 16))
    cfg = resolve_train_config({"data": str(data), "out": str(tmp_path / "run"), "epochs": 2, "quiet": True,
                                "batch_size": 16, "val_size": 6, "loss": "cb-focal", "ece_bins": 5,
                                "rebalance": "class-aware", "rebalance_from_epoch": 1})
    summary = run_training(cfg)
    assert 0 <= summary["test_ece"] <= 1
    bins = summary["test_calibration_bins"]  # what the report's reliability diagram draws, and the ECE again
    assert [len(bins[k]) for k in ("count", "confidence_sum", "correct")] == [5, 5, 5] and sum(bins["count"]) == 30
    assert all(c <= n and n * 0.2 * b - 1e-9 <= s <= n * 0.2 * (b + 1) + 1e-9
               for b, (n, s, c) in enumerate(zip(bins["count"], bins["confidence_sum"], bins["correct"])))
    gap = sum(abs(c - s) for s, c in zip(bins["confidence_sum"], bins["correct"])) / 30
    assert gap == pytest.approx(summary["test_ece"])
    assert list(summary["test_acc_by_class_size"]) == ["few"]  # 18 training images per class (20 less 2 held out)
    assert "test_acc_by_thirds" not in summary  # 3 classes, not 10
