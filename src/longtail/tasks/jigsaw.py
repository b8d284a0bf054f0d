"""Jigsaw pretraining: class labels unused; images -> shuffled tiles -> JigsawNet -> Sinkhorn ->
BCE against the permutation matrix (:mod:`longtail.jigsaw`). The model is selected on the
validation split's whole-puzzle accuracy (Hungarian decoding); its trunk is what
:mod:`longtail.transfer` moves into a classifier.

With ``--model resnet32`` the tile trunk is ResNet-32's (:mod:`longtail.models.jigsaw_resnet`), which
transfers into a ResNet-32 classifier by name.

With ``jigsaw_head = "classify"`` the puzzle is instead a K-way classification over a fixed set of
permutations far apart in Hamming distance (Noroozi & Favaro 2016; :mod:`longtail.jigsaw.permutations`),
selected on permutation accuracy. The set follows from (grid, permutations, permutation_seed) and is
stored in the checkpoint and the summary, so a class index can be read back as a tile order.
"""

from __future__ import annotations

import torch
from torch import nn

from longtail.config import PretrainConfig
from longtail.data.loader import BatchLoader
from longtail.data.prepare import PreparedData
from longtail.distributed import DistContext
from longtail.engine import FitState
from longtail.errors import LongtailError
from longtail.jigsaw.objective import JigsawObjective, PermutationClassObjective
from longtail.jigsaw.permutations import check_permutation_count, maximal_hamming_permutations, min_pairwise_hamming
from longtail.jigsaw.tiles import TileOptions, tile_size
from longtail.models import JigsawClassifyNetConfig, JigsawNetConfig, JigsawResNetConfig, arch_record, build_module
from longtail.tasks.base import RunTask


# --model -> the jigsaw net whose trunk transfers into it: the seed CNN's by the layer map,
# ResNet-32's by name (longtail.transfer)
JIGSAW_MODELS = ("seed-cnn", "resnet32")


def jigsaw_arch(model: str, head: str, channels: int, grid: int, tile: tuple[int, int], permutations: int) -> dict:
    """The arch record of the jigsaw net for ``--model model`` and ``--jigsaw-head head``."""
    if model == "resnet32":
        return arch_record("JigsawResNet", JigsawResNetConfig(in_channels=channels, grid=grid, tile_size=tile,
                                                              permutations=permutations if head == "classify" else 0))
    if head == "classify":
        return arch_record("JigsawClassifyNet", JigsawClassifyNetConfig(in_channels=channels, grid=grid,
                                                                        tile_size=tile, permutations=permutations))
    return arch_record("JigsawNet", JigsawNetConfig(in_channels=channels, grid=grid, tile_size=tile))


class JigsawTask(RunTask):
    kind = "jigsaw"
    # Every rank scores the whole split with the same weights (and rank 0's BatchNorm
    # statistics), so the figures agree without gathering decoded puzzles.
    shard_eval = False

    @classmethod
    def check_settings(cls, cfg: PretrainConfig) -> None:
        if cfg.model not in JIGSAW_MODELS:
            raise LongtailError(f"jigsaw pretraining trains the trunk of --model {' or '.join(JIGSAW_MODELS)}, not "
                                f"{cfg.model}; --task rotation pretrains any --model")
        if cfg.jigsaw_head == "classify":
            check_permutation_count(cfg.grid, cfg.permutations)

    def __init__(self, cfg: PretrainConfig, ds, data: PreparedData, device: torch.device, ctx: DistContext):
        channels, height, width = ds.image_shape
        tile = tile_size(height, width, cfg.grid)
        if cfg.gap and not cfg.gap < min(tile):
            raise LongtailError(f"gap must be below the tile size ({tile[1]}x{tile[0]} px), got {cfg.gap}")
        self.grid = cfg.grid
        self.head = cfg.jigsaw_head
        options = TileOptions(gap=cfg.gap, tile_norm=cfg.tile_norm, grayscale=cfg.grayscale)
        self.permutations: torch.Tensor | None = None
        if self.head == "classify":
            self.permutations = maximal_hamming_permutations(cfg.grid, cfg.permutations, cfg.permutation_seed)
            self.permutation_seed = cfg.permutation_seed
            self.objective = PermutationClassObjective(cfg.grid, self.permutations, options)
        else:
            self.objective = JigsawObjective(cfg.grid, options, cfg.sinkhorn_iters, cfg.tau)
        self.arch = jigsaw_arch(cfg.model, self.head, channels, cfg.grid, tile, cfg.permutations)
        self.model = build_module(self.arch).to(device).to(memory_format=torch.channels_last)

    def permutation_record(self) -> dict:
        """The permutation set of a 'classify' run (row c: the positions of class c's shuffled tiles)."""
        if self.permutations is None:
            return {}
        return {"permutations": self.permutations.tolist(), "permutation_seed": self.permutation_seed,
                "permutation_min_hamming": (min_pairwise_hamming(self.permutations)
                                            if len(self.permutations) > 1 else None)}

    def checkpoint_extras(self) -> dict:
        return self.permutation_record()

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_seed: tuple) -> torch.Tensor:
        return self.objective.training_loss(model, x, y, step_seed)

    def evaluate(self, model: nn.Module, loader: BatchLoader, precision: str) -> dict:
        return self.objective.evaluate(model, loader, precision)

    @staticmethod
    def epoch_figures(row: dict) -> list[tuple[str, float]]:
        way = "hungarian" if "val_puzzle_acc_hungarian" in row else "classify"
        return [("val puzzles", row[f"val_puzzle_acc_{way}"]), ("tiles", row[f"val_position_acc_{way}"])]

    @staticmethod
    def headline(summary: dict) -> str:
        if summary.get("jigsaw_head") == "classify":
            return (f"test permutations named {summary['test_permutation_acc']:.4f} of "
                    f"{len(summary['permutations'])}, tiles placed {summary['test_position_acc_classify']:.4f}, "
                    f"Kendall tau {summary['test_kendall_tau_classify']:.4f} "
                    f"(best epoch {summary['best_epoch']} on validation)")
        return (f"test puzzles solved {summary['test_puzzle_acc_hungarian']:.4f} (Hungarian) / "
                f"{summary['test_puzzle_acc_argmax']:.4f} (argmax), tiles placed "
                f"{summary['test_position_acc_hungarian']:.4f}, confidence {summary['test_confidence']:.4f} "
                f"(best epoch {summary['best_epoch']} on validation)")

    def summary(self, model: nn.Module, test: BatchLoader, precision: str, state: FitState,
                data: PreparedData) -> dict:
        return {
            "task": "jigsaw",
            **self.pretext_summary(model, test, precision, state),
            "grid": self.grid,
            "jigsaw_head": self.head,
            **self.permutation_record(),
        }
