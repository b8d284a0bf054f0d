"""Classification losses, each a small ``torch.nn.Module`` in a registry.

Every loss is called as ``loss(logits, targets)`` and returns a scalar, so any of them drops
into plain PyTorch code. A loss that changes over training (deferred re-weighting) also has
``set_epoch(epoch)``; the training loop calls it when present.

Every loss also takes ``loss(logits, targets, sample_weight=s)``: s_i scales sample i's term and
leaves the loss's normaliser as it is (the batch size, or the sum of class weights of a weighted
mean). So s = c everywhere gives c times the loss, and a mixed label (mixup, Remix:
``longtail.tasks.mixing``) is ``loss(z, y_a, s) + loss(z, y_b, 1 - s)`` for every loss here.

To add one: write a builder ``f(ctx: LossContext) -> nn.Module`` and decorate it with
``@register_loss("name")``. Builders read their parameters from ``ctx.params`` through
:func:`loss_params`, which rejects names a loss does not take. Formulas and references:
docs/imbalance.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import math

import torch
import torch.nn.functional as F
from torch import nn

from longtail.errors import LongtailError
from longtail.registry import Registry


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
LOSSES: Registry[LossBuilder] = Registry("loss")
register_loss = LOSSES.register


def build_loss(name: str, ctx: LossContext) -> nn.Module:
    return LOSSES.get_entry(name)(ctx)


def loss_params(ctx: LossContext, loss: str, defaults: dict, words: dict[str, tuple[str, ...]] | None = None) -> dict:
    """``ctx.params`` over ``defaults``; unknown names and wrong types are errors naming them. A
    number parameter named in ``words`` also takes those words (e.g. tau = "val")."""
    unknown = [k for k in ctx.params if k not in defaults]
    if unknown:
        takes = ", ".join(defaults) if defaults else "no parameters"
        raise LongtailError(f"loss {loss!r} has no parameter {unknown[0]!r} (it takes {takes})")
    values = dict(defaults)
    for key, value in ctx.params.items():
        if isinstance(defaults[key], str):
            if not isinstance(value, str):
                raise LongtailError(f"loss parameter {key} must be text, got {value!r}")
        elif value in (words or {}).get(key, ()):
            pass
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            also = "".join(f" or {w!r}" for w in (words or {}).get(key, ()))
            raise LongtailError(f"loss parameter {key} must be a number{also}, got {value!r}")
        values[key] = value
    return values


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise LongtailError(message)


def _checked_counts(class_counts: torch.Tensor) -> torch.Tensor:
    counts = torch.as_tensor(class_counts).double()
    if (counts <= 0).any():
        raise LongtailError("every class needs at least one training sample for this loss")
    return counts


def inverse_frequency_weights(class_counts: torch.Tensor) -> torch.Tensor:
    """The seed report's weights, w_j = sum_i N_i / N_j."""
    counts = _checked_counts(class_counts)
    return (counts.sum() / counts).float()


def class_balanced_weights(class_counts: torch.Tensor, beta: float = 0.9999) -> torch.Tensor:
    """Cui et al. 2019: w_j = 1 / E_j with effective number E_j = (1 - beta^n_j) / (1 - beta),
    normalised so the weights sum to the number of classes."""
    _check(0 <= beta < 1, f"beta must be in [0, 1), got {beta}")
    counts = _checked_counts(class_counts)
    w = (1 - beta) / (1 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    return (w / w.sum() * counts.numel()).float()


def log_prior(class_counts: torch.Tensor) -> torch.Tensor:
    """log pi_j with pi_j = n_j / sum_k n_k, the training set's class prior."""
    counts = _checked_counts(class_counts)
    return (counts / counts.sum()).log().float()


_REDUCTIONS = ("mean", "weighted_mean", "sum")


def reduce_weighted(per_sample: torch.Tensor, weight: torch.Tensor | None, reduction: str,
                    sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """``mean``: (1/B) sum_i s_i w_i l_i; ``weighted_mean``: sum_i s_i w_i l_i / sum_i w_i; ``sum``:
    sum_i s_i w_i l_i (s: ``sample_weight``, 1 when None; w: ``weight``, 1 when None)."""
    _check(reduction in _REDUCTIONS, f"loss reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
    if sample_weight is not None:
        per_sample = per_sample * sample_weight
    if weight is None:
        return per_sample.sum() if reduction == "sum" else per_sample.mean()
    weighted = per_sample * weight
    if reduction == "weighted_mean":
        return weighted.sum() / weight.sum()
    return weighted.sum() if reduction == "sum" else weighted.mean()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor | None = None,
                  label_smoothing: float = 0.0, sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """``F.cross_entropy`` (a weighted mean when ``weight`` is given), with each sample's term
    scaled by ``sample_weight`` and the normaliser kept (B, or sum_i w_{y_i})."""
    if sample_weight is None:
        return F.cross_entropy(logits, targets, weight=weight, label_smoothing=label_smoothing)
    # PyTorch's per-sample terms, so label smoothing spreads over the class weights as its mean does
    per_sample = F.cross_entropy(logits, targets, weight=weight, reduction="none", label_smoothing=label_smoothing)
    norm = weight[targets].sum() if weight is not None else targets.numel()
    return (per_sample * sample_weight).sum() / norm


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with a fixed weight per class.

    ``reduction='weighted_mean'`` (default, PyTorch's convention): sum_i w_{y_i} l_i / sum_i w_{y_i},
    so the loss scale does not depend on the weights' magnitude. ``'mean'``: (1/B) sum_i w_{y_i} l_i.
    ``'sum'``: sum_i w_{y_i} l_i, as the seed report writes the formula.
    """

    def __init__(self, weight: torch.Tensor | None = None, reduction: str = "weighted_mean",
                 label_smoothing: float = 0.0):
        super().__init__()
        _check(reduction in _REDUCTIONS, f"loss reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
        self.register_buffer("weight", weight if weight is not None else None)
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits.float()
        if self.reduction == "sum" and self.weight is None and sample_weight is None:
            return F.cross_entropy(logits, targets, reduction="sum", label_smoothing=self.label_smoothing)
        if self.reduction != "sum" and (self.weight is None or self.reduction == "weighted_mean"):
            return cross_entropy(logits, targets, self.weight, self.label_smoothing, sample_weight)
        per_sample = F.cross_entropy(logits, targets, reduction="none", label_smoothing=self.label_smoothing)
        return reduce_weighted(per_sample, None if self.weight is None else self.weight[targets], self.reduction,
                               sample_weight)


class FocalLoss(nn.Module):
    """Lin et al. 2017: l_i = -sum_j q_ij (1 - p_ij)^gamma log p_ij, with q_i the one-hot target
    (label-smoothed: (1 - eps) one-hot + eps / C). gamma = 0 is (label-smoothed) cross-entropy.
    An optional per-class ``weight`` multiplies l_i by w_{y_i} (the class-balanced focal loss)."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__()
        _check(gamma >= 0, f"focal gamma must not be negative, got {gamma}")
        _check(reduction in _REDUCTIONS, f"loss reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
        self.gamma = float(gamma)
        self.register_buffer("weight", weight)
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        q = F.one_hot(targets, logp.shape[1]).to(logp.dtype)
        if self.label_smoothing:
            q = q * (1 - self.label_smoothing) + self.label_smoothing / logp.shape[1]
        terms = q * logp
        if self.gamma:
            # the floor keeps d/dp (1 - p)^gamma finite at p = 1 when gamma < 1 (else 0 * inf = nan)
            terms = terms * (1 - logp.exp()).clamp_min(1e-12) ** self.gamma
        per_sample = -terms.sum(dim=1)
        return reduce_weighted(per_sample, None if self.weight is None else self.weight[targets], self.reduction,
                               sample_weight)


class SigmoidClassBalancedFocal(nn.Module):
    """Cui et al. 2019, class-balanced focal loss in the authors' sigmoid form.

    Every class is its own binary problem with target t_c (the one-hot label, label-smoothed to
    (1 - eps) t + eps / C when smoothing is on). Per sample i and class c:

        l_ic = w_{y_i} * m_ic * BCE(z_ic, t_ic),  m_ic = exp(-gamma t_ic z_ic - gamma log(1 + exp(-z_ic)))

    (m = (1 - sigmoid(z))^gamma for t = 1 and sigmoid(z)^gamma for t = 0, written as in their code so
    soft targets behave as theirs would), summed over i and c and divided by sum t = the batch size.

    Their method also starts the last layer's bias at -log(C - 1), so that sigmoid(z_c) = 1/C at
    the start and the C - 1 negative terms do not swamp the loss in the first steps; the bias is
    :attr:`init_bias`, applied by :func:`init_output_bias`.
    """

    def __init__(self, weight: torch.Tensor, gamma: float = 1.0, label_smoothing: float = 0.0):
        super().__init__()
        _check(gamma >= 0, f"focal gamma must not be negative, got {gamma}")
        num_classes = int(weight.numel())
        _check(num_classes >= 2, "the class-balanced focal loss needs at least two classes")
        self.register_buffer("weight", weight)
        self.gamma = float(gamma)
        self.label_smoothing = label_smoothing
        # two classes: -log(1) = 0, a sigmoid of 1/2 is already 1/C
        self.init_bias = -math.log(num_classes - 1)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        z = logits.float() if logits.dtype != torch.float64 else logits
        t = F.one_hot(targets, z.shape[1]).to(z.dtype)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + self.label_smoothing / z.shape[1]
        bce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
        if self.gamma:
            # softplus(-z) = log(1 + exp(-z)), without overflow for very negative z
            bce = bce * torch.exp(-self.gamma * t * z - self.gamma * F.softplus(-z))
        w = self.weight.to(z.dtype)[targets, None]  # w_y broadcast over the classes
        if sample_weight is not None:
            w = w * sample_weight.to(z.dtype)[:, None]
        return (w * bce).sum() / t.sum()


def init_output_bias(model: nn.Module, loss: nn.Module) -> bool:
    """Set the bias of ``model``'s last ``nn.Linear`` to ``loss.init_bias`` when the loss has one
    (the sigmoid class-balanced focal loss); True when a bias was set. Losses without an
    ``init_bias`` leave the model as it is."""
    bias = getattr(loss, "init_bias", None)
    if bias is None:
        return False
    # the output layer is the last module holding parameters of its own; a cosine head has no bias
    # to start (its logits are cosines), so there is nothing to set, and a hidden Linear must not
    # be mistaken for it
    layers = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    last = layers[-1] if layers else None
    if not isinstance(last, nn.Linear) or last.bias is None:
        return False
    with torch.no_grad():
        last.bias.fill_(bias)
    return True


class LDAMLoss(nn.Module):
    """Cao et al. 2019, label-distribution-aware margins with deferred re-weighting (DRW).

    The target logit is lowered by Delta_y = m * n_y^(-1/4) / max_j n_j^(-1/4) (largest margin m,
    0.5 by default), the logits are scaled by s, then cross-entropy. From epoch ``drw_epoch``
    (0-based; ``None``: never) the loss is weighted per class by ``drw_weight`` as in
    ``F.cross_entropy`` (a weighted mean). ``set_epoch`` switches it.
    """

    def __init__(self, class_counts: torch.Tensor, max_margin: float = 0.5, s: float = 30.0,
                 drw_epoch: int | None = None, drw_weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        _check(max_margin > 0, f"LDAM max_margin must be positive, got {max_margin}")
        _check(s > 0, f"LDAM scale s must be positive, got {s}")
        _check(drw_epoch is None or drw_epoch >= 0, f"drw_epoch must not be negative, got {drw_epoch}")
        m = _checked_counts(class_counts) ** -0.25
        self.register_buffer("margins", (m * (max_margin / m.max())).float())
        self.register_buffer("drw_weight", drw_weight)
        self.s = float(s)
        self.drw_epoch = drw_epoch
        self.label_smoothing = label_smoothing
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def logit_scale(self) -> float:
        """s: the network gives cosines, the loss treats s x cosine as the logits, so validation loss,
        probabilities (ECE, predict) and export use them too; softmax of bare cosines is near uniform."""
        return self.s

    @property
    def reweighting(self) -> bool:
        return self.drw_epoch is not None and self.drw_weight is not None and self.epoch >= self.drw_epoch

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits.float()
        shifted = logits - F.one_hot(targets, logits.shape[1]).to(logits.dtype) * self.margins[targets, None]
        return cross_entropy(self.s * shifted, targets, self.drw_weight if self.reweighting else None,
                             self.label_smoothing, sample_weight)


class LogitAdjustedLoss(nn.Module):
    """Menon et al. 2021 (logit-adjusted loss): cross-entropy of z + tau * log(pi), pi the training
    class prior. tau = 1 is the balanced softmax of Ren et al. 2020. Predict with plain argmax z."""

    def __init__(self, class_counts: torch.Tensor, tau: float = 1.0, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("adjustment", tau * log_prior(class_counts))
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        return cross_entropy(logits.float() + self.adjustment, targets, None, self.label_smoothing, sample_weight)


class PosthocLogitAdjustment(nn.Module):
    """Menon et al. 2021 (post-hoc): train with plain cross-entropy, predict argmax of
    z - tau * log(pi). ``posthoc_adjustment`` holds tau * log(pi) for the predictor to subtract.

    With ``tau_from_validation`` the run chooses tau on its validation split after training
    (``longtail.tasks.posthoc``) and sets it with :meth:`set_tau`; ``tau`` serves until then.
    """

    def __init__(self, class_counts: torch.Tensor, tau: float = 1.0, label_smoothing: float = 0.0,
                 tau_from_validation: bool = False):
        super().__init__()
        self.register_buffer("log_prior", log_prior(class_counts))
        self.register_buffer("posthoc_adjustment", tau * self.log_prior)
        self.tau = float(tau)
        self.tau_from_validation = tau_from_validation
        self.label_smoothing = label_smoothing

    def set_tau(self, tau: float) -> None:
        self.tau = float(tau)
        self.posthoc_adjustment = tau * self.log_prior

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                sample_weight: torch.Tensor | None = None) -> torch.Tensor:
        return cross_entropy(logits.float(), targets, None, self.label_smoothing, sample_weight)


@register_loss("ce")
def _ce(ctx: LossContext) -> nn.Module:
    loss_params(ctx, "ce", {})
    return WeightedCrossEntropy(None, label_smoothing=ctx.label_smoothing)


@register_loss("weighted")
def _weighted(ctx: LossContext) -> nn.Module:
    p = loss_params(ctx, "weighted", {"reduction": "weighted_mean"})
    return WeightedCrossEntropy(inverse_frequency_weights(ctx.class_counts), reduction=p["reduction"],
                                label_smoothing=ctx.label_smoothing)


@register_loss("cb")
def _cb(ctx: LossContext) -> nn.Module:
    # Cui et al.'s class-balanced softmax cross-entropy: each sample's loss weighted by w_y and
    # averaged over the batch (reduction "mean"). Its focal versions are separate names, since
    # "cb with gamma" once meant a softmax focal loss that is not the authors' (sigmoid) one.
    if "gamma" in ctx.params:
        raise LongtailError("loss 'cb' is class-balanced cross-entropy and takes no gamma; for a focal term use "
                            "'cb-focal' (Cui et al.'s sigmoid form) or 'cb-softmax-focal'")
    p = loss_params(ctx, "cb", {"beta": 0.9999, "reduction": "mean"})
    return FocalLoss(0.0, class_balanced_weights(ctx.class_counts, p["beta"]), p["reduction"], ctx.label_smoothing)


@register_loss("cb-softmax-focal")
def _cb_softmax_focal(ctx: LossContext) -> nn.Module:
    # The softmax focal loss of Lin et al. weighted by the class-balanced w_y: what 'cb' with
    # gamma > 0 computed before 'cb-focal' followed the authors' sigmoid form. Kept for comparison.
    p = loss_params(ctx, "cb-softmax-focal", {"beta": 0.9999, "gamma": 1.0, "reduction": "mean"})
    return FocalLoss(p["gamma"], class_balanced_weights(ctx.class_counts, p["beta"]), p["reduction"],
                     ctx.label_smoothing)


@register_loss("cb-focal")
def _cb_focal(ctx: LossContext) -> nn.Module:
    # Cui et al. 2019's CIFAR setting: beta = 0.9999, gamma = 1 (their best class-balanced focal
    # loss on CIFAR-10-LT at ratio 100).
    p = loss_params(ctx, "cb-focal", {"beta": 0.9999, "gamma": 1.0})
    return SigmoidClassBalancedFocal(class_balanced_weights(ctx.class_counts, p["beta"]), p["gamma"],
                                     ctx.label_smoothing)


@register_loss("focal")
def _focal(ctx: LossContext) -> nn.Module:
    p = loss_params(ctx, "focal", {"gamma": 2.0})
    return FocalLoss(p["gamma"], None, "mean", ctx.label_smoothing)


@register_loss("ldam-drw")
def _ldam_drw(ctx: LossContext) -> nn.Module:
    # Cao et al. re-weight for the last 20% of training (epoch 160 of 200).
    p = loss_params(ctx, "ldam-drw", {"max_margin": 0.5, "s": 30.0, "drw_epoch": ctx.epochs * 4 // 5,
                                      "beta": 0.9999})
    _check(float(p["drw_epoch"]).is_integer(), f"drw_epoch must be a whole epoch number, got {p['drw_epoch']}")
    return LDAMLoss(ctx.class_counts, p["max_margin"], p["s"], int(p["drw_epoch"]),
                    class_balanced_weights(ctx.class_counts, p["beta"]), ctx.label_smoothing)


@register_loss("logit-adjust")
def _logit_adjust(ctx: LossContext) -> nn.Module:
    p = loss_params(ctx, "logit-adjust", {"tau": 1.0})
    return LogitAdjustedLoss(ctx.class_counts, p["tau"], ctx.label_smoothing)


@register_loss("balanced-softmax")
def _balanced_softmax(ctx: LossContext) -> nn.Module:
    loss_params(ctx, "balanced-softmax", {})
    return LogitAdjustedLoss(ctx.class_counts, 1.0, ctx.label_smoothing)


TAU_FROM_VALIDATION = "val"


@register_loss("logit-adjust-posthoc")
def _logit_adjust_posthoc(ctx: LossContext) -> nn.Module:
    # tau = "val": chosen on the validation split after training; epochs are scored with tau = 1
    # (the paper's default) until then
    p = loss_params(ctx, "logit-adjust-posthoc", {"tau": 1.0}, words={"tau": (TAU_FROM_VALIDATION,)})
    search = p["tau"] == TAU_FROM_VALIDATION
    return PosthocLogitAdjustment(ctx.class_counts, 1.0 if search else p["tau"], ctx.label_smoothing,
                                  tau_from_validation=search)
