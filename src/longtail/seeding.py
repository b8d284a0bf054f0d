"""Random streams derived from coordinates: (run seed, epoch, step, stream tag, ...)."""

from __future__ import annotations

import numpy as np
import torch


def derived_generator(*keys: int) -> torch.Generator:
    """A generator seeded from a tuple of integers (run seed, epoch, step, ...).

    Deriving every stream from its coordinates, rather than drawing from one long stream, is
    what lets a run resume in the middle of an epoch with exactly the numbers it would have had.
    """
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))
