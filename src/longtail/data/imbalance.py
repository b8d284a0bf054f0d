"""Imbalance profiles: which training samples stay. Samples are removed from the dataset
before any loader sees it, so a shuffled loader cannot show the model the removed ones.

A profile maps the per-class counts available to the per-class counts kept. Specs:
``step:RATIO`` (or ``step:RATIO:MINORITY`` with MINORITY like ``0-4`` or ``0,2,5``),
``exponential:RATIO``, ``counts:N0,N1,...``; ``none`` keeps every sample (an arm that sets it
undoes a study's imbalanced [defaults]: the balanced reference of "how much does imbalance cost").
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import torch

from longtail.errors import LongtailError
from longtail.registry import Registry

Profile = Callable[[list[int], list[str]], list[int]]
PROFILES: Registry[Profile] = Registry("imbalance profile")
register_profile = PROFILES.register


def _ratio(value: str, spec: str) -> float:
    try:
        ratio = float(value)
    except ValueError:
        raise LongtailError(f"imbalance ratio in {spec!r} must be a number, got {value!r}") from None
    if not ratio > 1 or not math.isfinite(ratio):
        raise LongtailError(f"imbalance ratio must be greater than 1, got {value} in {spec!r}")
    return ratio


def _class_set(value: str, num_classes: int, spec: str) -> list[int]:
    chosen: set[int] = set()
    try:
        for part in value.split(","):
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-"))
                chosen.update(range(lo, hi + 1))
            else:
                chosen.add(int(part))
    except ValueError:
        raise LongtailError(f"minority classes in {spec!r} must look like 0-4 or 0,2,5") from None
    if not chosen or min(chosen) < 0 or max(chosen) >= num_classes:
        raise LongtailError(f"minority classes in {spec!r} must be between 0 and {num_classes - 1}")
    return sorted(chosen)


@register_profile("step")
def step_profile(available: list[int], args: list[str]) -> list[int]:
    """The seed's profile: minority classes (default the first half) keep 1/ratio of their samples."""
    spec = "step:" + ":".join(args)
    ratio = _ratio(args[0], spec) if args and args[0] else 10.0
    c = len(available)
    if len(args) > 2:
        raise LongtailError(f"{spec!r}: the step profile takes a ratio and optionally the minority classes")
    minority = _class_set(args[1], c, spec) if len(args) > 1 else list(range(c // 2))
    return [math.floor(n / ratio) if j in minority else n for j, n in enumerate(available)]


@register_profile("exponential")
def exponential_profile(available: list[int], args: list[str]) -> list[int]:
    """Cao et al. 2019: n_j = floor(n_max * ratio^(-j/(C-1))), never above what class j has."""
    spec = "exponential:" + ":".join(args)
    ratio = _ratio(args[0], spec) if args and args[0] else 100.0
    if len(args) > 1:
        raise LongtailError(f"{spec!r}: the exponential profile takes only a ratio")
    c = len(available)
    if c < 2:
        raise LongtailError(f"{spec!r} needs at least two classes")
    n_max = max(available)
    # The tiny epsilon keeps exact products (5000 * 100^-1 = 50) from flooring to 49 in floating point.
    return [min(n, math.floor(n_max * ratio ** (-j / (c - 1)) + 1e-9)) for j, n in enumerate(available)]


@register_profile("none")
def no_profile(available: list[int], args: list[str]) -> list[int]:
    """Every sample stays."""
    if args:
        raise LongtailError(f"imbalance 'none' takes no arguments, got {'none:' + ':'.join(args)!r}")
    return list(available)


@register_profile("counts")
def counts_profile(available: list[int], args: list[str]) -> list[int]:
    spec = "counts:" + ":".join(args)
    try:
        counts = [int(v) for v in ",".join(args).split(",") if v.strip()]
    except ValueError:
        raise LongtailError(f"{spec!r}: counts must be integers separated by commas") from None
    if len(counts) != len(available):
        raise LongtailError(f"{spec!r} gives {len(counts)} counts but the dataset has {len(available)} classes")
    for j, (want, have) in enumerate(zip(counts, available)):
        if want < 0:
            raise LongtailError(f"{spec!r}: count for class {j} is negative")
        if want > have:
            raise LongtailError(f"{spec!r}: class {j} has only {have} training samples, {want} asked for")
    return counts


def profile_counts(spec: str, available: list[int]) -> list[int]:
    """Per-class counts kept by the profile ``spec`` given the counts available."""
    name, _, rest = spec.partition(":")
    counts = PROFILES.get_entry(name)(available, rest.split(":") if rest else [])
    empty = [j for j, n in enumerate(counts) if n <= 0]
    if empty:
        raise LongtailError(f"imbalance {spec!r} leaves class {empty[0]} with no samples")
    return counts


def apply_profile(labels: torch.Tensor, spec: str, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Positions (into ``labels``) of the samples that stay, sorted; which ones is drawn by ``generator``."""
    available = torch.bincount(labels, minlength=num_classes).tolist()
    counts = profile_counts(spec, available)
    kept = []
    for j, n in enumerate(counts):
        members = torch.nonzero(labels == j).flatten()
        kept.append(members[torch.randperm(members.numel(), generator=generator)[:n]])
    return torch.sort(torch.cat(kept)).values


def minority_classes(counts: list[int]) -> list[int]:
    """Classes with fewer than half the largest class's training samples.

    The one definition used by the oversampling remedies (which classes get copies) and by the
    study's minority/majority accuracies; with the seed's step:10 profile it is classes 0-4.
    """
    top = max(counts)
    return [j for j, n in enumerate(counts) if n < top / 2]


def indices_hash(indices: torch.Tensor) -> str:
    """A short content hash of a set of indices, recorded so a run's kept set can be checked."""
    return hashlib.sha256(indices.to(torch.int64).numpy().tobytes()).hexdigest()[:16]
