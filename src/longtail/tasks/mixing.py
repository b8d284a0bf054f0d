"""Batch mixing for classification: mixup (Zhang et al. 2018) and Remix (Chou et al. 2020).

Both draw one lambda ~ Beta(alpha, alpha) per batch and a random pairing (a permutation of the
batch), and train on the images x~ = lam * x + (1 - lam) * x[perm]. Mixup's label is mixed with the
same lam; Remix moves the whole label to the rarer class of a pair when that class is at least
kappa times rarer and its image dominates the mix. The loss of a mixed label is the weighted sum of
the loss at each label, which every loss in :mod:`longtail.losses` supports (its ``sample_weight``).

The draws come from a generator derived from (seed, epoch, step), so a resumed run mixes exactly
as an uninterrupted one. Formulas and sources: docs/imbalance.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from longtail.errors import LongtailError
from longtail.registry import Registry
from longtail.seeding import derived_generator

MIX_STREAM = 0x313C  # the mixing draws' tag among the (seed, epoch, step, tag) streams


@dataclass(frozen=True)
class MixContext:
    """What a mixing method may know: the class sizes of the imbalanced training set and its settings."""

    class_counts: torch.Tensor
    alpha: float = 1.0
    kappa: float = 3.0
    tau: float = 0.5


class MixedBatch(NamedTuple):
    x: torch.Tensor  # the mixed images
    y_a: torch.Tensor  # each image's own label
    y_b: torch.Tensor  # the label of the image mixed into it
    weight_a: float | torch.Tensor  # the label weight of y_a (a scalar, or one per sample); y_b gets 1 - it


Mixer = Callable[[torch.Tensor, torch.Tensor, torch.Generator], MixedBatch]
MixBuilder = Callable[[MixContext], Mixer | None]
MIXES: Registry[MixBuilder] = Registry("mix method")
register_mix = MIXES.register


def build_mix(name: str, ctx: MixContext) -> Mixer | None:
    """The mixer ``name`` names; None for no mixing."""
    return MIXES.get_entry(name)(ctx)


def draw_pairing(batch_size: int, alpha: float, g: torch.Generator) -> tuple[float, torch.Tensor]:
    """(lam ~ Beta(alpha, alpha), a random permutation of the batch), both from ``g``."""
    # torch's Beta sampler takes no generator; numpy's, seeded from g, keeps the draw a function of g
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=g))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    return lam, torch.randperm(batch_size, generator=g)


def mix_step(mixer: Mixer, x: torch.Tensor, y: torch.Tensor, step_seed: tuple) -> MixedBatch:
    """The mixing of training step ``step_seed`` = (seed, epoch, step): its draws depend on those
    coordinates only, so a resumed run mixes each step as the uninterrupted run did."""
    return mixer(x, y, derived_generator(*step_seed, MIX_STREAM))


def mix_images(x: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """lam * x + (1 - lam) * x[perm]."""
    return lam * x + (1 - lam) * x[perm.to(x.device)]


def remix_label_weights(lam: float, y_a: torch.Tensor, y_b: torch.Tensor, class_counts: torch.Tensor,
                        kappa: float = 3.0, tau: float = 0.5) -> torch.Tensor:
    """Chou et al. 2020's label weight lam_y of y_a for images lam * x_a + (1 - lam) * x_b:
    0 when n_a / n_b >= kappa and lam < tau (b is the rarer class and its image dominates), 1 when
    n_a / n_b <= 1 / kappa and 1 - lam < tau (the same with a and b swapped), else lam."""
    counts = class_counts.to(torch.float64)
    ratio = counts[y_a.cpu()] / counts[y_b.cpu()]
    weight = torch.full(ratio.shape, lam, dtype=torch.float64)
    weight[(ratio >= kappa) & (lam < tau)] = 0.0
    weight[(ratio <= 1 / kappa) & (1 - lam < tau)] = 1.0
    return weight.to(torch.float32).to(y_a.device)


def mixed_loss(loss_fn: nn.Module, logits: torch.Tensor, batch: MixedBatch) -> torch.Tensor:
    """The loss of the mixed labels: lam * L(z, y_a) + (1 - lam) * L(z, y_b) for a scalar weight
    (mixup's own formulation); per sample, L(z, y_a, s) + L(z, y_b, 1 - s) with the loss's
    ``sample_weight`` (Remix), which is the same thing when every s_i is lam."""
    w = batch.weight_a
    if isinstance(w, torch.Tensor):
        return loss_fn(logits, batch.y_a, sample_weight=w) + loss_fn(logits, batch.y_b, sample_weight=1 - w)
    return w * loss_fn(logits, batch.y_a) + (1 - w) * loss_fn(logits, batch.y_b)


class Mixup:
    """Zhang et al. 2018: images and labels mixed with the same lam."""

    def __init__(self, alpha: float = 1.0):
        if not alpha > 0:
            raise LongtailError(f"mix alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> MixedBatch:
        lam, perm = draw_pairing(x.shape[0], self.alpha, g)
        y_b = y[perm.to(y.device)]
        return MixedBatch(mix_images(x, lam, perm), y, y_b, self.label_weight(lam, y, y_b))

    def label_weight(self, lam: float, y_a: torch.Tensor, y_b: torch.Tensor) -> float | torch.Tensor:
        return lam


class Remix(Mixup):
    """Chou et al. 2020: mixup's images, labels re-weighted towards the rarer class of each pair."""

    def __init__(self, class_counts: torch.Tensor, alpha: float = 1.0, kappa: float = 3.0, tau: float = 0.5):
        super().__init__(alpha)
        counts = torch.as_tensor(class_counts)
        if (counts <= 0).any():
            raise LongtailError("remix needs at least one training sample of every class")
        if kappa < 1 or not 0 <= tau <= 1:
            raise LongtailError(f"remix needs kappa >= 1 and tau in [0, 1], got kappa {kappa}, tau {tau}")
        self.class_counts, self.kappa, self.tau = counts, float(kappa), float(tau)

    def label_weight(self, lam: float, y_a: torch.Tensor, y_b: torch.Tensor) -> torch.Tensor:
        return remix_label_weights(lam, y_a, y_b, self.class_counts, self.kappa, self.tau)


@register_mix("none")
def _none(ctx: MixContext) -> None:
    return None


@register_mix("mixup")
def _mixup(ctx: MixContext) -> Mixer:
    return Mixup(ctx.alpha)


@register_mix("remix")
def _remix(ctx: MixContext) -> Mixer:
    return Remix(ctx.class_counts, ctx.alpha, ctx.kappa, ctx.tau)
