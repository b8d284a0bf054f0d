"""Data: sources -> validation split -> imbalance -> rebalance -> batches."""

from longtail.data.sources import ImageDataset, load_dataset

__all__ = ["ImageDataset", "load_dataset"]
