"""Classification metrics, all derived from one confusion matrix.

Rows are true classes, columns predicted classes. A confusion matrix sums across batches and
across processes, so every metric here is exact for a whole split however it was batched.
"""

from __future__ import annotations

import torch


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    flat = targets.long() * num_classes + predictions.long()
    return torch.bincount(flat.cpu(), minlength=num_classes * num_classes).view(num_classes, num_classes)


def accuracy(cm: torch.Tensor) -> float:
    total = int(cm.sum())
    return float(cm.diagonal().sum()) / total if total else 0.0


def per_class_accuracy(cm: torch.Tensor) -> list[float | None]:
    """Recall of each class; None for a class with no samples in the split (JSON has no NaN)."""
    return [float(cm[c, c]) / float(s) if s else None for c, s in enumerate(cm.sum(dim=1).tolist())]


def balanced_accuracy(cm: torch.Tensor) -> float:
    """Mean recall over the classes present in the split."""
    support = cm.sum(dim=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float((cm.diagonal()[present].double() / support[present]).mean())


def macro_f1(cm: torch.Tensor) -> float:
    """Unweighted mean of per-class F1 over classes present in targets or predictions."""
    tp = cm.diagonal().double()
    fp = cm.sum(dim=0).double() - tp
    fn = cm.sum(dim=1).double() - tp
    denom = 2 * tp + fp + fn
    present = denom > 0
    if not present.any():
        return 0.0
    return float((2 * tp[present] / denom[present]).mean())


def classification_report(cm: torch.Tensor) -> dict:
    """All metrics of one split as plain JSON-ready values."""
    return {
        "acc": accuracy(cm),
        "balanced_acc": balanced_accuracy(cm),
        "macro_f1": macro_f1(cm),
        "per_class_acc": per_class_accuracy(cm),
        "confusion": cm.tolist(),
    }
