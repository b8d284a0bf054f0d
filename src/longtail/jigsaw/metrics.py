"""How well puzzles are solved: the seed report's three figures, for two decoders.

- per-position accuracy: the share of tiles put at their true position;
- whole-puzzle accuracy: the share of puzzles with every tile right;
- confidence: the probability the doubly-stochastic output gives each tile's true position,
  averaged over tiles and puzzles, i.e. sum(Y * P) / n per puzzle (it needs no decoder).
"""

from __future__ import annotations

import torch

from longtail.errors import LongtailError
from longtail.jigsaw.decode import decode

DECODERS = ("argmax", "hungarian")


def position_accuracy(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """Share of tiles whose predicted position is the true one; (N, n) position tensors."""
    _check_positions(predicted, true)
    return float((predicted == true).double().mean())


def puzzle_accuracy(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """Share of puzzles whose every tile is at its true position."""
    _check_positions(predicted, true)
    return float((predicted == true).all(dim=1).double().mean())


def confidence(probs: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over puzzles of sum(Y * P) / n: the average probability of each tile's true position."""
    if probs.shape != target.shape:
        raise LongtailError(f"probabilities {tuple(probs.shape)} and targets {tuple(target.shape)} differ in shape")
    n = probs.shape[-1]
    return float((probs.double() * target.double()).sum(dim=(1, 2)).div(n).mean())


def jigsaw_metrics(log_probs: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """All figures for (N, n, n) log doubly-stochastic outputs and permutation-matrix targets."""
    true = target.argmax(dim=2)
    out = {}
    for method in DECODERS:
        predicted = decode(log_probs, method)
        out[f"position_acc_{method}"] = position_accuracy(predicted, true)
        out[f"puzzle_acc_{method}"] = puzzle_accuracy(predicted, true)
    out["confidence"] = confidence(log_probs.exp(), target)
    return out


def _check_positions(predicted: torch.Tensor, true: torch.Tensor) -> None:
    if predicted.shape != true.shape or predicted.ndim != 2:
        raise LongtailError(f"predicted {tuple(predicted.shape)} and true {tuple(true.shape)} positions "
                            "must both be (N, n)")
