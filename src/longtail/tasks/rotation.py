"""Rotation pretraining (Gidaris et al. 2018, "Unsupervised representation learning by predicting
image rotations"): class labels unused; every image is shown at 0, 90, 180 and 270 degrees and the
net says which. As in the paper, all four rotations of each image go into the same batch (their
section 3.1: it beat drawing one rotation per image), so a batch of N images is a 4N-image step and
there is nothing random to draw.

The net is the one ``--model`` names (the seed CNN by default) with a 4-way head, so everything but
that head has the classifier's layer names and shapes: it saw whole images, not tiles, so every
trunk layer fits, and ``--init`` copies it by name (:mod:`longtail.transfer`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from longtail.config import PretrainConfig
from longtail.data.loader import BatchLoader
from longtail.data.prepare import PreparedData
from longtail.device import autocast
from longtail.distributed import DistContext
from longtail.engine import FitState
from longtail.errors import LongtailError
from longtail.models import ModelRequest, build_model, split_model_name
from longtail.tasks.base import RunTask

ANGLES = (0, 90, 180, 270)  # label k <-> k * 90 degrees counter-clockwise


def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, S, S) square images -> (4N, C, S, S) rotations and their (4N,) labels.

    Block k of N images is every image turned k * 90 degrees counter-clockwise as displayed
    (row 0 at the top): ``torch.rot90`` over dims (H, W) turns from the H axis towards the W axis,
    which moves the top-right pixel to the top left. Blocks rather than interleaving keep each
    rotation one contiguous ``rot90`` call."""
    if x.shape[-1] != x.shape[-2]:
        raise LongtailError(f"rotation needs square images (a turned {x.shape[-1]}x{x.shape[-2]} px image "
                            "changes shape); resize them square")
    rotated = torch.cat([torch.rot90(x, k, dims=(-2, -1)) for k in range(len(ANGLES))])
    labels = torch.arange(len(ANGLES), device=x.device).repeat_interleave(x.shape[0])
    return rotated, labels


class RotationTask(RunTask):
    kind = "rotation"
    # Every rank scores the whole split with the same weights, as the jigsaw task does.
    shard_eval = False

    @classmethod
    def check_settings(cls, cfg: PretrainConfig) -> None:
        split_model_name(cfg.model)  # e.g. tv without its torchvision name

    def __init__(self, cfg: PretrainConfig, ds, data: PreparedData, device: torch.device, ctx: DistContext):
        channels, height, width = ds.image_shape
        if height != width:
            raise LongtailError(f"rotation pretraining needs square images, got {width}x{height} px "
                                "(a turned image would change shape)")
        model, self.arch = build_model(cfg.model, ModelRequest(in_channels=channels, num_classes=len(ANGLES),
                                                               image_size=(height, width)))
        self.model = model.to(device).to(memory_format=torch.channels_last)

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_seed: tuple) -> torch.Tensor:
        rotated, labels = rotate_batch(x)
        return F.cross_entropy(model(rotated).float(), labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: BatchLoader, precision: str) -> dict:
        """Rotation accuracy over all four rotations of every image of the split (the score), and
        per angle; the mean cross-entropy."""
        was_training = model.training
        model.eval()
        correct = torch.zeros(len(ANGLES), dtype=torch.float64)
        count, loss_sum = 0, 0.0
        for x, _ in loader.epoch(0):
            rotated, labels = rotate_batch(x)
            with autocast(loader.device, precision):
                logits = model(rotated).float()
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            hits = (logits.argmax(dim=1) == labels).double().reshape(len(ANGLES), -1).sum(dim=1)
            correct += hits.cpu()
            count += x.shape[0]
        model.train(was_training)
        n = max(count, 1)
        per_angle = {f"rotation_acc_{a}": float(c) / n for a, c in zip(ANGLES, correct)}
        accuracy = float(correct.sum()) / (len(ANGLES) * n)
        return {"loss": loss_sum / (len(ANGLES) * n), "rotation_acc": accuracy, **per_angle, "score": accuracy}

    @staticmethod
    def epoch_figures(row: dict) -> list[tuple[str, float]]:
        return [("val rotation acc", row["val_rotation_acc"])]

    @staticmethod
    def headline(summary: dict) -> str:
        per_angle = ", ".join(f"{a}: {summary[f'test_rotation_acc_{a}']:.4f}" for a in ANGLES)
        return (f"test rotation accuracy {summary['test_rotation_acc']:.4f} ({per_angle}) "
                f"(best epoch {summary['best_epoch']} on validation)")

    def summary(self, model: nn.Module, test: BatchLoader, precision: str, state: FitState,
                data: PreparedData) -> dict:
        return {"task": "rotation", **self.pretext_summary(model, test, precision, state)}
