"""Rebalancing: what the training set looks like after oversampling, and how it is sampled.

A rebalancer takes the (already imbalanced) training images and labels and returns a
:class:`Rebalanced`: possibly more images (copies, augmented copies) and possibly an index
order for each epoch (a sampler). Register one with ``@register_rebalancer("name")``.

Minority classes are those with fewer than half the largest class's samples
(:func:`longtail.data.imbalance.minority_classes`); M below is the mean count of the other
(majority) classes. Methods:

- ``copy`` (the seed's): each minority class j is replicated to max(1, round(M / n_j)) copies
  in total (the seed at step ratio 10: 9 extra copies).
- ``aug`` (the seed's): each minority sample gets four fixed augmented copies (horizontal
  flip, vertical flip, brightness change, contrast change); that five-fold set is then
  replicated to max(1, round(M / (5 n_j))) copies (the seed at ratio 10: twice, 10x in all).
- ``aug-only``: the four augmented copies, no further replication (the seed's aug+loss arm).
- ``copy-aug``: the counts of ``copy``, but each replicated copy gets a fresh random flip,
  vertical flip, brightness and contrast change every epoch instead of being a fixed copy.
- ``class-balanced`` / ``sqrt``: the data stay as they are; each epoch draws as many indices as
  there are samples, class j with probability proportional to 1 (resp. sqrt(n_j)).
With ``rebalance_from_epoch`` = E > 0 (deferred re-sampling, :func:`deferred`), any of them applies
from epoch E on; epochs before E are plain shuffles of the original samples.
- ``class-aware`` (Kang et al. 2020): the data stay as they are; each epoch visits the classes
  round-robin (shuffled class order per round), each class cycling through its shuffled samples,
  so every epoch holds exactly equal class counts (C x ceil(N / C) indices).

Given a view (:class:`longtail.data.views.IndexedImages`, what prepare.py passes), copies are
index arrays into the same source: no pixels are copied, except the augmented copies ``aug``
makes, which are new pixels (of the minority samples only). Given a tensor, they are tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from longtail.data.augment import (BatchAugment, adjust_brightness, adjust_contrast, random_brightness,
                                   random_contrast, random_hflip, random_vflip)
from longtail.data.imbalance import minority_classes
from longtail.data.loader import IndexOrder
from longtail.data.samplers import ClassBalancedSampler, CyclingClassSampler, SquareRootSampler
from longtail.data.views import Images, append_rows, select_rows
from longtail.registry import Registry

# Fixed augmented copies change brightness and contrast by a factor 1 +- U(0.2, 0.4): far enough
# from 1 that every copy differs visibly from its source, near enough to keep the image natural.
FACTOR_RANGE = (0.2, 0.4)
# The on-the-fly copies draw their factors from 1 + U(-0.4, 0.4) each epoch.
RANDOM_STRENGTH = 0.4
FIXED_OPS = ("hflip", "vflip", "brightness", "contrast")


@dataclass
class Rebalanced:
    images: Images
    labels: torch.Tensor
    index_order: IndexOrder | None = None
    # For each output sample, the position in the input of the image it was made from.
    source: torch.Tensor | None = None
    # Samples flagged here get ``copy_augment`` applied afresh in every batch they appear in.
    copy_mask: torch.Tensor | None = None
    copy_augment: BatchAugment | None = None


Rebalancer = Callable[[Images, torch.Tensor, int, torch.Generator], Rebalanced]
REBALANCERS: Registry[Rebalancer] = Registry("rebalance method")
register_rebalancer = REBALANCERS.register


def majority_mean(counts: list[int]) -> float:
    """Mean count of the classes that are not minority classes."""
    minority = set(minority_classes(counts))
    majority = [n for j, n in enumerate(counts) if j not in minority]
    return sum(majority) / len(majority)


def replication_factors(counts: list[int], set_size: int = 1) -> list[int]:
    """How many times each class's (``set_size``-fold) sample set appears after oversampling."""
    minority = set(minority_classes(counts))
    target = majority_mean(counts)
    return [max(1, round(target / (set_size * n))) if j in minority else 1 for j, n in enumerate(counts)]


def fixed_augmented_copies(images: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """The four fixed copies of uint8 ``images``, op-major: all hflips, all vflips, all brightness
    changes (factor ``brightness[i]`` for image i), all contrast changes; uint8 again."""
    x = images.to(torch.float32).div(255)
    bright = adjust_brightness(x, brightness).mul(255).round().to(torch.uint8)
    contr = adjust_contrast(x, contrast).mul(255).round().to(torch.uint8)
    return torch.cat([images.flip(-1), images.flip(-2), bright, contr])


def _factors(n: int, g: torch.Generator) -> torch.Tensor:
    lo, hi = FACTOR_RANGE
    magnitude = lo + (hi - lo) * torch.rand(n, generator=g)
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return 1 + sign * magnitude


def _replicate(labels: torch.Tensor, pool_positions: torch.Tensor, factors: list[int]) -> torch.Tensor:
    """Positions of ``factors[j] - 1`` further copies of each ``pool_positions`` sample of class j."""
    extra = []
    pool_labels = labels[pool_positions]
    for j, k in enumerate(factors):
        if k > 1:
            extra.append(pool_positions[pool_labels == j].repeat(k - 1))
    return torch.cat(extra) if extra else torch.empty(0, dtype=torch.long)


def _oversample(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Positions of every sample, then of the minority copies that ``copy`` adds."""
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    extra = _replicate(labels, torch.arange(labels.numel()), replication_factors(counts))
    return torch.cat([torch.arange(labels.numel()), extra])


@register_rebalancer("none")
def _none(images: Images, labels: torch.Tensor, num_classes: int, g: torch.Generator) -> Rebalanced:
    return Rebalanced(images, labels)


@register_rebalancer("copy")
def _copy(images: Images, labels: torch.Tensor, num_classes: int, g: torch.Generator) -> Rebalanced:
    idx = _oversample(labels, num_classes)
    return Rebalanced(select_rows(images, idx), labels[idx], source=idx)


def _augmented(images: Images, labels: torch.Tensor, num_classes: int, g: torch.Generator,
               replicate: bool) -> Rebalanced:
    n = labels.numel()
    counts = torch.bincount(labels, minlength=num_classes).tolist()
    minority = torch.tensor(minority_classes(counts), dtype=torch.long)
    chosen = torch.nonzero(torch.isin(labels, minority)).flatten()
    if chosen.numel() == 0:  # nothing to oversample
        return Rebalanced(images, labels, source=torch.arange(n))
    copies = fixed_augmented_copies(images[chosen], _factors(chosen.numel(), g), _factors(chosen.numel(), g))
    # The pool: every input sample, then the four copies; "source" maps pool positions to inputs.
    pool_images = append_rows(images, copies)
    pool_source = torch.cat([torch.arange(n), chosen.repeat(len(FIXED_OPS))])
    pool_labels = labels[pool_source]
    positions = torch.arange(pool_labels.numel())
    if replicate:
        five_fold = torch.cat([chosen, torch.arange(n, pool_labels.numel())])
        extra = _replicate(pool_labels, five_fold, replication_factors(counts, set_size=1 + len(FIXED_OPS)))
        positions = torch.cat([positions, extra])
    return Rebalanced(select_rows(pool_images, positions), pool_labels[positions], source=pool_source[positions])


@register_rebalancer("aug")
def _aug(images: Images, labels: torch.Tensor, num_classes: int, g: torch.Generator) -> Rebalanced:
    return _augmented(images, labels, num_classes, g, replicate=True)


@register_rebalancer("aug-only")
def _aug_only(images: Images, labels: torch.Tensor, num_classes: int, g: torch.Generator) -> Rebalanced:
    return _augmented(images, labels, num_classes, g, replicate=False)


def random_copy_augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The seed's four operations, each drawn at random per image: the on-the-fly counterpart of
    :func:`fixed_augmented_copies`."""
    x = random_vflip(random_hflip(x, g), g)
    return random_contrast(random_brightness(x, g, RANDOM_STRENGTH), g, RANDOM_STRENGTH)


@register_rebalancer("copy-aug")
def _copy_aug(images: Images, labels: torch.Tensor, num_classes: int, g: torch.Generator) -> Rebalanced:
    idx = _oversample(labels, num_classes)
    mask = torch.zeros(idx.numel(), dtype=torch.bool)
    mask[labels.numel():] = True
    return Rebalanced(select_rows(images, idx), labels[idx], source=idx, copy_mask=mask,
                      copy_augment=random_copy_augment)


@register_rebalancer("class-balanced")
def _class_balanced(images: Images, labels: torch.Tensor, num_classes: int, g: torch.Generator) -> Rebalanced:
    sampler = ClassBalancedSampler(labels)
    return Rebalanced(images, labels, index_order=lambda epoch, gen: sampler.draw(gen))


@register_rebalancer("class-aware")
def _class_aware(images: Images, labels: torch.Tensor, num_classes: int, g: torch.Generator) -> Rebalanced:
    sampler = CyclingClassSampler(labels)
    return Rebalanced(images, labels, index_order=lambda epoch, gen: sampler.draw(gen))


@register_rebalancer("sqrt")
def _sqrt(images: Images, labels: torch.Tensor, num_classes: int, g: torch.Generator) -> Rebalanced:
    sampler = SquareRootSampler(labels)
    return Rebalanced(images, labels, index_order=lambda epoch, gen: sampler.draw(gen))


def deferred(rb: Rebalanced, n_original: int, from_epoch: int) -> Rebalanced:
    """Deferred re-sampling (DRS, Cao et al. 2019): ``rb`` applies from epoch ``from_epoch``
    (0-based) on; before it the epochs are plain instance sampling of the ``n_original`` input
    samples, exactly the order a run without rebalancing draws (the loader's shuffle is
    ``randperm(N)`` from the same generator). Every rebalancer puts the original samples first,
    so a copy-type rebalancer's enlarged set is restricted to its first ``n_original`` positions:
    before the switch an epoch is N samples long, after it the enlarged set's length."""
    if from_epoch <= 0:
        return rb
    if rb.source is not None and not torch.equal(rb.source[:n_original], torch.arange(n_original)):
        raise AssertionError("a rebalancer must put the original samples first")  # a bug, not a user error
    later, n_all = rb.index_order, rb.labels.numel()

    def order(epoch: int, g: torch.Generator) -> torch.Tensor:
        if epoch < from_epoch:
            return torch.randperm(n_original, generator=g)
        return later(epoch, g) if later is not None else torch.randperm(n_all, generator=g)

    return replace(rb, index_order=order)


def rebalance(name: str, images: Images, labels: torch.Tensor, num_classes: int,
              generator: torch.Generator) -> Rebalanced:
    return REBALANCERS.get_entry(name)(images, labels, num_classes, generator)
