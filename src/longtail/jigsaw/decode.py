"""From score matrices to a position for every tile.

``scores[b, i, j]`` says how well shuffled tile ``i`` of puzzle ``b`` fits grid position ``j``
(e.g. the log of the Sinkhorn output). Every method returns a (N, n) long tensor with the
position it gives each tile.

- ``argmax``: each row's best column, as the seed report does; two tiles may get one position.
- ``hungarian``: the permutation with the largest total score, by the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment``), one puzzle at a time.
- ``exhaustive``: the same optimum by scoring all n! permutations at once as tensor ops; for
  small puzzles only (2x2 has 24), where it is the independent check on ``hungarian``.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from longtail.errors import LongtailError

METHODS = ("argmax", "hungarian", "exhaustive")
MAX_EXHAUSTIVE_TILES = 6  # 720 permutations; 3x3's 362,880 per puzzle would not fit in memory


def decode(scores: torch.Tensor, method: str = "hungarian") -> torch.Tensor:
    """Positions (N, n) for (N, n, n) score matrices by ``method``: argmax, hungarian or exhaustive."""
    if scores.ndim != 3 or scores.shape[1] != scores.shape[2]:
        raise LongtailError(f"decode needs score matrices of shape (N, n, n), got {tuple(scores.shape)}")
    if method == "argmax":
        return scores.argmax(dim=2)
    if method == "hungarian":
        return _hungarian(scores)
    if method == "exhaustive":
        return _exhaustive(scores)
    raise LongtailError(f"unknown decoding method {method!r}; choose from {', '.join(METHODS)}")


def _hungarian(scores: torch.Tensor) -> torch.Tensor:
    values = scores.detach().to("cpu", torch.float64).numpy()
    out = np.empty(values.shape[:2], dtype=np.int64)
    for b, matrix in enumerate(values):
        rows, cols = linear_sum_assignment(matrix, maximize=True)
        out[b, rows] = cols
    return torch.from_numpy(out).to(scores.device)


@lru_cache(maxsize=8)
def all_permutations(n: int) -> torch.Tensor:
    """Every permutation of ``range(n)`` as rows of an (n!, n) tensor, in lexicographic order."""
    return torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long).reshape(math.factorial(n), n)


def _exhaustive(scores: torch.Tensor) -> torch.Tensor:
    n = scores.shape[1]
    if n > MAX_EXHAUSTIVE_TILES:
        raise LongtailError(f"exhaustive decoding scores all {n}! permutations; use it for up to "
                            f"{MAX_EXHAUSTIVE_TILES} tiles and 'hungarian' beyond")
    perms = all_permutations(n).to(scores.device)
    # totals[b, p] = sum_i scores[b, i, perms[p, i]]
    totals = scores[:, torch.arange(n, device=scores.device), perms].sum(dim=2)
    return perms[totals.argmax(dim=1)]
