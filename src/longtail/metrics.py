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


def calibration_bins(confidences: torch.Tensor, correct: torch.Tensor, num_bins: int = 15) -> torch.Tensor:
    """Per equal-width confidence bin (lo, hi] of [0, 1]: (count, sum of confidences, number
    correct), a (3, num_bins) float64 tensor. Sums, so batches and processes add up exactly."""
    raw = confidences.detach().cpu()
    raw = raw if raw.is_floating_point() else raw.double()
    # boundaries in the confidences' own precision, as MiSLAS and torchmetrics compare them: a
    # float32 0.4 is then in (0.2, 0.4], not pushed over by float64's nearer 0.4
    boundaries = torch.linspace(0, 1, num_bins + 1, dtype=raw.dtype)
    # bucketize(right=False) puts x in bin i when boundaries[i] < x <= boundaries[i + 1] (MiSLAS's
    # gt(lower) * le(upper)); a confidence of exactly 0 joins the first bin
    index = torch.bucketize(raw, boundaries[1:-1])
    conf = raw.double()
    out = torch.zeros(3, num_bins, dtype=torch.float64)
    out[0].index_add_(0, index, torch.ones_like(conf))
    out[1].index_add_(0, index, conf)
    out[2].index_add_(0, index, correct.detach().double().cpu())
    return out


def expected_calibration_error(bins: torch.Tensor) -> float:
    """ECE = sum_b (n_b / N) |acc_b - conf_b| over the bins of :func:`calibration_bins`
    (Guo et al. 2017; MiSLAS's and torchmetrics' multiclass ECE with norm l1)."""
    count, conf_sum, correct_sum = bins
    total = float(count.sum())
    if not total:
        return 0.0
    # n_b |acc_b - conf_b| = |correct_b - conf_sum_b|: empty bins add nothing
    return float((correct_sum - conf_sum).abs().sum()) / total


# Kang et al. 2020 / Liu et al. 2019's split by training images per class.
MANY_ABOVE, FEW_BELOW = 100, 20


def accuracy_by_class_size(train_counts: list[int], per_class_acc: list[float | None]) -> dict[str, float]:
    """Mean test recall over the classes with many (> 100 training images), medium (20-100) and
    few (< 20) training images; only the groups that have classes (with test samples)."""
    groups: dict[str, list[float]] = {"many": [], "medium": [], "few": []}
    for n, acc in zip(train_counts, per_class_acc):
        if acc is None:
            continue
        groups["many" if n > MANY_ABOVE else "few" if n < FEW_BELOW else "medium"].append(acc)
    return {name: sum(accs) / len(accs) for name, accs in groups.items() if accs}


def accuracy_by_thirds(train_counts: list[int], per_class_acc: list[float | None]) -> dict[str, float] | None:
    """For 10 classes, the CIFAR-10-LT split: head (the 3 largest classes by training count),
    middle (the next 4), tail (the 3 smallest); ties keep class order. None for other class counts."""
    if len(train_counts) != 10:
        return None
    order = sorted(range(10), key=lambda j: (-train_counts[j], j))
    out = {}
    for name, members in (("head", order[:3]), ("middle", order[3:7]), ("tail", order[7:])):
        accs = [per_class_acc[j] for j in members if per_class_acc[j] is not None]
        if accs:
            out[name] = sum(accs) / len(accs)
    return out
