"""A fixed set of K tile permutations far apart in Hamming distance, for the jigsaw puzzle as a
K-way classification (Noroozi & Favaro 2016, "Unsupervised learning of visual representations by
solving jigsaw puzzles", section 3.3).

Greedy max-min selection: start from one permutation drawn from ``seed``; then repeatedly add the
candidate whose minimum Hamming distance to the chosen set is largest (ties: the first in
lexicographic order). The paper's Algorithm 1 writes the sum of distances (1^T D) as the
criterion; the minimum is what bounds how alike two classes can be, so it is what we maximise
and report (:func:`min_pairwise_hamming`).

Every one of the n! candidates is kept with its running minimum distance to the chosen set, so
each addition is one (n!, n) comparison against the new permutation: for 3x3 (362,880
candidates) and K = 100 that took 0.1 s on the dev CPU, after 0.7 s to list the candidates
(both cached per process).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from longtail.errors import LongtailError
from longtail.jigsaw.decode import all_permutations

MAX_ENUMERATED_TILES = 9  # 3x3: 362,880 candidates; 4x4's 16! (2e13) cannot be listed


def check_permutation_count(grid: int, k: int) -> None:
    """Refuse a set size the grid cannot supply, or a grid too large to enumerate."""
    tiles = grid * grid
    if tiles > MAX_ENUMERATED_TILES:
        raise LongtailError(f"a permutation set is chosen among all ({tiles})! orderings of the tiles, which can be "
                            f"listed up to a 3x3 grid; use grid 2 or 3, or jigsaw_head 'sinkhorn' for a "
                            f"{grid}x{grid} grid")
    if not 1 <= k <= math.factorial(tiles):
        raise LongtailError(f"a {grid}x{grid} grid has {math.factorial(tiles)} tile orderings; "
                            f"permutations must be between 1 and {math.factorial(tiles)}, got {k}")


def hamming_to(columns: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """(M,) uint8 number of positions where each candidate differs from ``perm``; ``columns`` is the
    candidates transposed, (n, M) uint8 and C-contiguous, so each position is one pass over M
    bytes. NumPy, not torch: on the busy 2-core dev machine torch's threaded kernels took 4-60 ms
    a call on these 362,880 bytes and NumPy 0.3 ms (a K=100 set in 0.1 s rather than 7 s)."""
    out = np.zeros(columns.shape[1], dtype=np.uint8)
    for i, value in enumerate(perm):
        out += columns[i] != value
    return out


@lru_cache(maxsize=4)
def _uint8_columns(n: int) -> np.ndarray:
    return np.ascontiguousarray(all_permutations(n).numpy().astype(np.uint8).T)


@lru_cache(maxsize=16)
def _maximal_hamming_set(grid: int, k: int, seed: int) -> torch.Tensor:
    check_permutation_count(grid, k)
    tiles = grid * grid
    columns = _uint8_columns(tiles)
    first = int(torch.randint(columns.shape[1], (1,), generator=torch.Generator().manual_seed(seed)))
    chosen = [first]
    # nearest[c]: the smallest Hamming distance of candidate c to the chosen set (0 for chosen ones,
    # so argmax never picks one twice while any unchosen candidate remains).
    nearest = hamming_to(columns, columns[:, first])
    for _ in range(k - 1):
        best = int(nearest.argmax())  # the first maximum: ties go to the lexicographically first
        chosen.append(best)
        np.minimum(nearest, hamming_to(columns, columns[:, best]), out=nearest)
    return torch.from_numpy(columns[:, chosen].T.astype(np.int64))


def maximal_hamming_permutations(grid: int, k: int, seed: int = 0) -> torch.Tensor:
    """(k, grid*grid) long tensor: row ``c`` is the positions of class ``c``'s shuffled tiles
    (shuffled tile ``i`` comes from grid position ``row[i]``, as :mod:`longtail.jigsaw.tiles`)."""
    return _maximal_hamming_set(grid, k, seed).clone()


def min_pairwise_hamming(perms: torch.Tensor) -> int:
    """The smallest Hamming distance between two different rows of ``perms``."""
    if len(perms) < 2:
        raise LongtailError("the minimum pairwise distance needs at least two permutations")
    d = (perms[:, None, :] != perms[None, :, :]).sum(dim=2)
    d.fill_diagonal_(perms.shape[1] + 1)
    return int(d.min())
