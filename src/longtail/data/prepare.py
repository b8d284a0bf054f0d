"""The splits of one run: validation hold-out -> subset -> imbalance -> rebalance.

source -> validation split -> subset (limit_train) -> imbalance -> rebalance, then the loaders.

Every step chooses rows, so every split is a view of the source (views.IndexedImages: the source
tensor, possibly memory-mapped, and an index array); no pixels are copied here, except the
augmented copies of the ``aug`` rebalancers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from longtail.data.imbalance import apply_profile, indices_hash
from longtail.data.rebalance import deferred, rebalance
from longtail.data.split import stratified_take, train_val_split
from longtail.data.views import Images, IndexedImages
from longtail.errors import LongtailError
from longtail.seeding import derived_generator


@dataclass
class PreparedData:
    """The splits of one run, after the imbalance profile and rebalancing."""

    classes: list[str]
    train_images: Images  # views of the source (see the module doc)
    train_labels: torch.Tensor
    val_images: Images
    val_labels: torch.Tensor
    test_images: Images
    test_labels: torch.Tensor
    kept_counts: list[int]  # per class, after the imbalance profile, before rebalancing
    kept_hash: str
    index_order: object = None
    copy_mask: torch.Tensor | None = None  # samples re-augmented every epoch (rebalance copy-aug)
    copy_augment: object = None

    @property
    def train_counts(self) -> list[int]:
        return torch.bincount(self.train_labels, minlength=len(self.classes)).tolist()


def default_val_size(n_train: int) -> int:
    """10% of the training split: 5,000 for CIFAR-10."""
    return max(1, round(n_train * 0.1))


def training_indices(cfg: Any, ds) -> tuple[torch.Tensor, torch.Tensor]:
    """(training positions before any imbalance, validation positions) in ``ds``'s train split."""
    c = ds.num_classes
    val_size = cfg.val_size or default_val_size(len(ds.train_labels))
    train_idx, val_idx = train_val_split(ds.train_labels, val_size, c, cfg.split_seed)
    if cfg.limit_train is not None and cfg.limit_train < train_idx.numel():
        sub = stratified_take(ds.train_labels[train_idx], cfg.limit_train, c,
                              torch.Generator().manual_seed(cfg.split_seed + 1))
        train_idx = train_idx[sub]
    return train_idx, val_idx


def available_counts(cfg: Any, ds) -> list[int]:
    """Per-class training counts an imbalance profile starts from (after validation and limit_train)."""
    train_idx, _ = training_indices(cfg, ds)
    return torch.bincount(ds.train_labels[train_idx], minlength=ds.num_classes).tolist()


def prepare_data(cfg: Any, ds) -> PreparedData:
    """The splits of a run with settings ``cfg``; ``imbalance`` and ``rebalance`` apply where the
    settings have them (classifier runs)."""
    c = ds.num_classes
    train_idx, val_idx = training_indices(cfg, ds)
    imbalance = getattr(cfg, "imbalance", None)
    if imbalance:
        kept = apply_profile(ds.train_labels[train_idx], imbalance, c, derived_generator(cfg.seed, 0x1B))
        train_idx = train_idx[kept]
    labels = ds.train_labels[train_idx]
    kept_counts = torch.bincount(labels, minlength=c).tolist()
    if min(kept_counts) == 0:
        empty = kept_counts.index(0)
        raise LongtailError(f"class {ds.classes[empty]!r} has no training samples left "
                            "(raise --limit-train or change the imbalance profile)")
    source = IndexedImages.of(ds.train_images)
    rb = rebalance(getattr(cfg, "rebalance", "none"), source.take(train_idx), labels, c,
                   derived_generator(cfg.seed, 0x2B))
    rb = deferred(rb, labels.numel(), getattr(cfg, "rebalance_from_epoch", 0))  # DRS: plain epochs first
    test_images, test_labels = IndexedImages.of(ds.test_images), ds.test_labels
    if cfg.limit_test is not None and cfg.limit_test < test_labels.numel():
        sub = stratified_take(test_labels, cfg.limit_test, c, torch.Generator().manual_seed(cfg.split_seed + 2))
        test_images, test_labels = test_images.take(sub), test_labels[sub]
    return PreparedData(ds.classes, rb.images, rb.labels, source.take(val_idx), ds.train_labels[val_idx],
                        test_images, test_labels, kept_counts, indices_hash(train_idx), rb.index_order,
                        rb.copy_mask, rb.copy_augment)
