import math

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
