"""Rebalancing: what the training set looks like after oversampling, and how it is sampled.

A rebalancer takes the (already imbalanced) training images and labels and returns a
:class:`Rebalanced`: possibly more images (copies, augmented copies) and possibly an index
order for each epoch (a sampler). Register one with ``@register_rebalancer("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from longtail.data.loader import IndexOrder
from longtail.errors import LongtailError


@dataclass
class Rebalanced:
    images: torch.Tensor
    labels: torch.Tensor
    index_order: IndexOrder | None = None


Rebalancer = Callable[[torch.Tensor, torch.Tensor, int, torch.Generator], Rebalanced]
REBALANCERS: dict[str, Rebalancer] = {}


def register_rebalancer(name: str) -> Callable[[Rebalancer], Rebalancer]:
    def add(fn: Rebalancer) -> Rebalancer:
        REBALANCERS[name] = fn
        return fn

    return add


@register_rebalancer("none")
def _none(images: torch.Tensor, labels: torch.Tensor, num_classes: int, g: torch.Generator) -> Rebalanced:
    return Rebalanced(images, labels)


def rebalance(name: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
              generator: torch.Generator) -> Rebalanced:
    if name not in REBALANCERS:
        raise LongtailError(f"unknown rebalance method {name!r}; choose from {', '.join(REBALANCERS)}")
    return REBALANCERS[name](images, labels, num_classes, generator)
