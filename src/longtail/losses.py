"""Classification losses, each a small ``torch.nn.Module`` in a registry.

Every loss is called as ``loss(logits, targets)`` and returns a scalar, so any of them drops
into plain PyTorch code. A loss that changes over training (deferred re-weighting) also has
``set_epoch(epoch)``; the training loop calls it when present.

To add one: write a builder ``f(ctx: LossContext) -> nn.Module`` and decorate it with
``@register_loss("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from longtail.errors import LongtailError


@dataclass(frozen=True)
class LossContext:
    """What a loss builder may know: the training set's class counts and the run's settings."""

    class_counts: torch.Tensor
    epochs: int = 1
    label_smoothing: float = 0.0
    params: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.class_counts.numel())


LossBuilder = Callable[[LossContext], nn.Module]
LOSSES: dict[str, LossBuilder] = {}


def register_loss(name: str) -> Callable[[LossBuilder], LossBuilder]:
    def add(builder: LossBuilder) -> LossBuilder:
        LOSSES[name] = builder
        return builder

    return add


def build_loss(name: str, ctx: LossContext) -> nn.Module:
    if name not in LOSSES:
        raise LongtailError(f"unknown loss {name!r}; choose from {', '.join(sorted(LOSSES))}")
    return LOSSES[name](ctx)


def inverse_frequency_weights(class_counts: torch.Tensor) -> torch.Tensor:
    """The seed report's weights, w_j = sum_i N_i / N_j."""
    counts = class_counts.double()
    if (counts <= 0).any():
        raise LongtailError("every class needs at least one training sample for a weighted loss")
    return (counts.sum() / counts).float()


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with a fixed weight per class.

    ``reduction='weighted_mean'`` (default, PyTorch's convention): sum_i w_{y_i} l_i / sum_i w_{y_i},
    so the loss scale does not depend on the weights' magnitude. ``'mean'``: (1/B) sum_i w_{y_i} l_i.
    ``'sum'``: sum_i w_{y_i} l_i, as the seed report writes the formula.
    """

    def __init__(self, weight: torch.Tensor | None = None, reduction: str = "weighted_mean",
                 label_smoothing: float = 0.0):
        super().__init__()
        if reduction not in ("weighted_mean", "mean", "sum"):
            raise LongtailError(f"loss reduction must be weighted_mean, mean or sum, got {reduction!r}")
        self.register_buffer("weight", weight if weight is not None else None)
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.weight is None or self.reduction == "weighted_mean":
            return F.cross_entropy(logits, targets, weight=self.weight, label_smoothing=self.label_smoothing)
        per_sample = F.cross_entropy(logits, targets, reduction="none", label_smoothing=self.label_smoothing)
        weighted = per_sample * self.weight[targets]
        return weighted.sum() if self.reduction == "sum" else weighted.mean()


@register_loss("ce")
def _ce(ctx: LossContext) -> nn.Module:
    return WeightedCrossEntropy(None, label_smoothing=ctx.label_smoothing)


@register_loss("weighted")
def _weighted(ctx: LossContext) -> nn.Module:
    return WeightedCrossEntropy(inverse_frequency_weights(ctx.class_counts),
                                reduction=ctx.params.get("reduction", "weighted_mean"),
                                label_smoothing=ctx.label_smoothing)
