"""Hold out a stratified validation split, and take stratified subsets, by index."""

from __future__ import annotations

import torch

from longtail.errors import LongtailError


def stratified_take(labels: torch.Tensor, n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``n`` samples drawn without replacement, each class in proportion to its share.

    Rounding leftovers go to the classes with the largest fractional remainders, so the total is
    exactly ``n``. Returned indices are sorted.
    """
    total = labels.numel()
    if not 0 <= n <= total:
        raise LongtailError(f"cannot take {n} samples from a split of {total}")
    counts = torch.bincount(labels, minlength=num_classes)
    exact = counts.double() * n / max(total, 1)
    take = exact.floor().long()
    remainder = n - int(take.sum())
    if remainder:
        order = torch.argsort(exact - take, descending=True, stable=True)
        take[order[:remainder]] += 1
    chosen = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        perm = torch.randperm(members.numel(), generator=generator)
        chosen.append(members[perm[: int(take[c])]])
    return torch.sort(torch.cat(chosen)).values


def train_val_split(labels: torch.Tensor, val_size: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split training indices into (train, validation), stratified and seeded."""
    if not 0 < val_size < labels.numel():
        raise LongtailError(f"val_size must be between 1 and {labels.numel() - 1}, got {val_size}")
    g = torch.Generator().manual_seed(seed)
    val = stratified_take(labels, val_size, num_classes, g)
    keep = torch.ones(labels.numel(), dtype=torch.bool)
    keep[val] = False
    return torch.nonzero(keep).flatten(), val
