"""How a run shows its curves while it trains: one line per epoch on stderr, and optionally
TensorBoard scalars (the optional extra ``longtail[tensorboard]``), the way the long-tail field's
reference code (LDAM-DRW, RIDE) logs them."""

from __future__ import annotations

import math
from pathlib import Path

from longtail.errors import LongtailError

EXTRA = "pip install 'longtail[tensorboard]'"


def epoch_line(row: dict, epochs: int, figures: list[tuple[str, float]]) -> str:
    """``epoch 3/20: train loss 1.2345, val acc 0.5123, balanced 0.4987, 7,412 img/s``"""
    parts = [f"train loss {row['train_loss']:.4f}", *(f"{name} {value:.4f}" for name, value in figures),
             f"{row['images_per_s']:,.0f} img/s"]
    return f"epoch {row['epoch']}/{epochs}: " + ", ".join(parts)


def check_available() -> None:
    try:
        import tensorboard  # noqa: F401 - torch's SummaryWriter needs it
    except ImportError:
        raise LongtailError(f"--tensorboard needs the tensorboard package: {EXTRA}") from None


class TensorBoardCurves:
    """Each metrics.jsonl row as scalars named after its keys, at step = epoch."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    def add(self, row: dict) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
