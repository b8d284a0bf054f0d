"""How well puzzles are solved: the seed report's three figures, for two decoders.

- per-position accuracy: the share of tiles put at their true position;
- whole-puzzle accuracy: the share of puzzles with every tile right;
- confidence: the probability the doubly-stochastic output gives each tile's true position,
  averaged over tiles and puzzles, i.e. sum(Y * P) / n per puzzle (it needs no decoder);

and two of Mena et al. 2018 (Gumbel-Sinkhorn), so results compare with theirs:

- Kendall tau between the predicted and the true tile order, per puzzle, averaged (1: all right,
  -1: reversed, 0 for a random order);
- puzzle error: the share of puzzles with any tile wrong (1 - whole-puzzle accuracy).
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


def kendall_tau(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """Mean over puzzles of Kendall's tau-b between predicted and true positions, (N, n) tensors.

    Over the n(n-1)/2 tile pairs: (concordant - discordant) / sqrt((pairs - tied_pred) *
    (pairs - tied_true)), scipy's default variant; for permutations there are no ties and it is
    tau-a. Ties arise with argmax decoding (two tiles sent to one position). A puzzle whose
    predictions are all one position has no defined tau and counts 0 (no agreement shown)."""
    _check_positions(predicted, true)
    n = predicted.shape[1]
    i, j = torch.triu_indices(n, n, offset=1)
    dp = torch.sign(predicted[:, i] - predicted[:, j]).double()
    dt = torch.sign(true[:, i] - true[:, j]).double()
    pairs = i.numel()
    denominator = torch.sqrt((dp != 0).sum(dim=1).double() * (dt != 0).sum(dim=1).double())
    numerator = (dp * dt).sum(dim=1)
    tau = torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), torch.zeros_like(numerator))
    return float(tau.mean()) if pairs else 1.0


def puzzle_error(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """Share of puzzles with any tile wrong: 1 - :func:`puzzle_accuracy`."""
    return 1.0 - puzzle_accuracy(predicted, true)


def position_figures(predicted: torch.Tensor, true: torch.Tensor, name: str) -> dict[str, float]:
    """The decoder-dependent figures of (N, n) predicted positions, keyed ``FIGURE_name``."""
    return {f"position_acc_{name}": position_accuracy(predicted, true),
            f"puzzle_acc_{name}": puzzle_accuracy(predicted, true),
            f"kendall_tau_{name}": kendall_tau(predicted, true),
            f"puzzle_error_{name}": puzzle_error(predicted, true)}


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
        out.update(position_figures(decode(log_probs, method), true, method))
    out["confidence"] = confidence(log_probs.exp(), target)
    return out


def _check_positions(predicted: torch.Tensor, true: torch.Tensor) -> None:
    if predicted.shape != true.shape or predicted.ndim != 2:
        raise LongtailError(f"predicted {tuple(predicted.shape)} and true {tuple(true.shape)} positions "
                            "must both be (N, n)")
