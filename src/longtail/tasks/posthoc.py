"""Choosing post-hoc logit adjustment's tau on the validation split (Menon et al. 2021, section 4).

Predictions are argmax_y z_y - tau * log pi_y. After training, with the weights chosen on
validation, every tau of :data:`TAU_GRID` is scored by validation balanced accuracy (the paper's
target is the balanced error); the best one is used for the test figures and stored with the
checkpoint, so ``longtail predict`` predicts as the test figures were computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from longtail.data.loader import BatchLoader
from longtail.device import autocast
from longtail.distributed import all_reduce_sum
from longtail.errors import LongtailError
from longtail.metrics import balanced_accuracy, confusion_matrix

# 0, 0.25, ..., 4: the range of Menon et al.'s Figure 3 (balanced error against tau; CIFAR-10-LT's
# panel spans 0 to 4, the others 0 to 2). Steps of 0.25 are finer than the curves' features there.
TAU_GRID = tuple(i / 4 for i in range(17))


def adjusted_confusions(logits: torch.Tensor, targets: torch.Tensor, log_prior: torch.Tensor,
                        grid: Sequence[float]) -> torch.Tensor:
    """(len(grid), C, C): the confusion matrix of argmax(z - tau log pi) for each tau of ``grid``."""
    c = logits.shape[1]
    prior = log_prior.to(logits.device, logits.dtype)
    return torch.stack([confusion_matrix(targets, (logits - tau * prior).argmax(dim=1), c) for tau in grid])


def choose_tau(grid: Sequence[float], scores: Sequence[float]) -> float:
    """The tau of the highest score; among equal scores the one nearest 1 (the paper's default,
    what the theory gives for calibrated probabilities), then the smaller."""
    best = max(scores)
    return min((tau for tau, s in zip(grid, scores) if s == best), key=lambda tau: (abs(tau - 1), tau))


@torch.no_grad()
def search_tau(model: nn.Module, val: BatchLoader, precision: str, log_prior: torch.Tensor,
               grid: Sequence[float] = TAU_GRID) -> dict:
    """Score every tau of ``grid`` on the validation split; the record summary.json keeps: the
    chosen tau and the curve it was chosen from. Under torchrun the confusion matrices are summed
    over the ranks' shares first, so every rank chooses the same tau."""
    was_training = model.training
    model.eval()
    cms = torch.zeros(len(grid), log_prior.numel(), log_prior.numel(), dtype=torch.int64)
    for x, y in val.epoch(0):
        with autocast(val.device, precision):
            logits = model(x).float()
        cms += adjusted_confusions(logits, y, log_prior, grid)
    model.train(was_training)
    cms = all_reduce_sum(cms)
    if int(cms[0].sum()) == 0:
        raise LongtailError("loss parameter tau=val chooses tau on the validation split, and this run has no "
                            "validation images; give tau a number")
    scores = [balanced_accuracy(cm) for cm in cms]
    tau = choose_tau(grid, scores)
    return {"tau": tau, "chosen_by": "validation balanced accuracy", "grid": list(grid),
            "val_balanced_acc": scores}
