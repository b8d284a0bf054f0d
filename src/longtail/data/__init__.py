"""Data: sources -> validation split -> imbalance -> rebalance -> batches.

The names below load on first use, so that torch-free modules of this package (options.py,
which config.py and ``longtail --help`` read) can be imported without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ImageDataset", "load_dataset"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from longtail.data import sources

        return getattr(sources, name)
    raise AttributeError(f"module 'longtail.data' has no attribute {name!r}")
