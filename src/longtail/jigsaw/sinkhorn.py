"""Sinkhorn normalization: a score matrix -> a doubly-stochastic matrix (Mena et al. 2018).

Alternately normalizing rows and columns of exp(S / tau) converges to the doubly-stochastic
matrix closest to it. In the log domain each normalization is a subtraction of a logsumexp, so
a small ``tau`` (sharp, nearly a permutation) cannot overflow exp.
"""

from __future__ import annotations

import torch

from longtail.errors import LongtailError

DEFAULT_ITERS = 20
DEFAULT_TAU = 1.0


def log_sinkhorn(log_scores: torch.Tensor, n_iters: int = DEFAULT_ITERS, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """Log of the doubly-stochastic matrix for (..., n, n) scores; ends with a column step, so
    columns sum to 1 exactly and rows to within the residual of ``n_iters`` iterations."""
    if log_scores.ndim < 2 or log_scores.shape[-1] != log_scores.shape[-2]:
        raise LongtailError(f"sinkhorn needs square score matrices (..., n, n), got shape {tuple(log_scores.shape)}")
    if n_iters < 1:
        raise LongtailError(f"sinkhorn needs at least 1 iteration, got {n_iters}")
    if not tau > 0:
        raise LongtailError(f"the sinkhorn temperature tau must be positive, got {tau}")
    log_p = log_scores / tau
    for _ in range(n_iters):
        log_p = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)  # rows sum to 1
        log_p = log_p - torch.logsumexp(log_p, dim=-2, keepdim=True)  # columns sum to 1
    return log_p


def sinkhorn(log_scores: torch.Tensor, n_iters: int = DEFAULT_ITERS, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """The doubly-stochastic matrix for (..., n, n) scores: rows and columns sum to 1."""
    return log_sinkhorn(log_scores, n_iters, tau).exp()
