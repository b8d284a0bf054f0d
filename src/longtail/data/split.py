"""Hold out stratified validation and test splits, and take stratified subsets, by index."""

from __future__ import annotations

import math

import torch

from longtail.errors import LongtailError
from longtail.seeding import derived_generator


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


def test_holdout(labels: torch.Tensor, fraction: float, classes: list[str], seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (train, test) of a source without a test split: class j gives
    floor(n_j * fraction + 1/2) of its n_j samples, drawn with ``seed``, to the test split.

    Both lists keep the source's order. A class left without a test or a training sample is
    refused: its test recall, or the class itself, would be missing from every figure."""
    g = derived_generator(seed, 0x7E57)
    test = []
    for j, name in enumerate(classes):
        members = torch.nonzero(labels == j).flatten()
        n = members.numel()
        take = math.floor(n * fraction + 0.5)
        if take == 0:
            raise LongtailError(f"--test-fraction {fraction} leaves class {name!r} ({n} images) with no test image; "
                                "raise it, or give that class more images")
        if take == n:
            raise LongtailError(f"--test-fraction {fraction} leaves class {name!r} ({n} images) with no training "
                                "image; lower it")
        test.append(members[torch.randperm(n, generator=g)[:take]])
    chosen = torch.zeros(labels.numel(), dtype=torch.bool)
    chosen[torch.cat(test)] = True
    return torch.nonzero(~chosen).flatten(), torch.nonzero(chosen).flatten()
