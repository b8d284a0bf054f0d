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
