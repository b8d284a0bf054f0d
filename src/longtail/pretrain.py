"""Self-supervised pretraining: from a :class:`PretrainConfig` to a finished run directory.

The same data flow and run store as a classifier run (see runner.py), with the jigsaw task in
place of classification: the training images (the classifier's validation split held out, so
transfer never sees it) -> puzzles -> JigsawNet -> Sinkhorn -> BCE -> fit -> test-set puzzle
metrics with the epoch chosen on validation -> summary.json, and a checkpoint whose trunk
:mod:`longtail.transfer` moves into the classifier.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longtail.config import merge_config
from longtail.errors import LongtailError

if TYPE_CHECKING:
    from longtail.data.sources import ImageDataset

TASKS = ("jigsaw",)


@dataclass
class PretrainConfig:
    """Everything that decides a pretraining run. Fields left ``None`` come from the recipe."""

    data: str = "cifar10"
    out: str | None = None
    task: str = "jigsaw"
    recipe: str = "seed"
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    schedule: str | None = None
    augment: list[str] | None = None
    grid: int = 2
    sinkhorn_iters: int | None = None
    tau: float | None = None
    gap: int | None = None
    tile_norm: bool | None = None
    grayscale: float | None = None
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    split_seed: int = 0
    val_size: int | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    threads: int | None = None
    checkpoint_every: int | None = None
    quiet: bool = False
    resume: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRETRAIN_RECIPES: dict[str, dict[str, Any]] = {
    # The seed report's setting (Homework 03): Adam 1e-3, batch 64, 10 epochs, plain 2x2 puzzles.
    "seed": dict(epochs=10, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant",
                 augment=[], sinkhorn_iters=20, tau=1.0, gap=0, tile_norm=False, grayscale=0.0),
    # Larger batches and a one-cycle schedule for speed; crop+flip and the three anti-shortcut
    # measures so the trunk learns content rather than tile borders, colour fringes and brightness.
    "improved": dict(epochs=10, batch_size=256, optimizer="adam", lr=3e-3, weight_decay=0.0, schedule="onecycle",
                     augment=["crop", "flip"], sinkhorn_iters=20, tau=1.0, gap=2, tile_norm=True, grayscale=0.3),
}


def resolve_pretrain_config(cli: dict | None = None, toml_path: str | Path | None = None,
                            base: dict | None = None) -> PretrainConfig:
    """Merge recipe defaults < ``base`` (a study's [pretrain] table) < TOML file < CLI values."""
    cfg = merge_config(PretrainConfig, PRETRAIN_RECIPES, "seed", cli=cli, toml_path=toml_path, base=base,
                       what="pretraining recipe")
    _check_ranges(cfg)
    return cfg


def _check_ranges(cfg: PretrainConfig) -> None:
    if cfg.task not in TASKS:
        raise LongtailError(f"unknown pretraining task {cfg.task!r}; choose from {', '.join(TASKS)}")
    if cfg.grid < 2:
        raise LongtailError(f"grid must be at least 2, got {cfg.grid}")
    if cfg.sinkhorn_iters < 1:
        raise LongtailError(f"sinkhorn_iters must be at least 1, got {cfg.sinkhorn_iters}")
    if not cfg.tau > 0:
        raise LongtailError(f"tau must be positive, got {cfg.tau}")
    if cfg.gap < 0:
        raise LongtailError(f"gap must not be negative, got {cfg.gap}")
    if not 0 <= cfg.grayscale <= 1:
        raise LongtailError(f"grayscale is a probability between 0 and 1, got {cfg.grayscale}")


def run_pretraining(cfg: PretrainConfig, dataset: ImageDataset | None = None) -> dict:
    """Pretrain, select on validation, test, and write the run directory. Returns the summary."""
    # Imported here, not at the top: the CLI builds its parser from PretrainConfig, and
    # `longtail --help` should not wait for torch to load.
    import torch

    from longtail.config import TrainConfig
    from longtail.data.augment import compose
    from longtail.data.loader import BatchLoader, channel_stats
    from longtail.data.sources import load_dataset
    from longtail.device import resolve_precision
    from longtail.jigsaw.task import JigsawTask
    from longtail.jigsaw.tiles import TileOptions, tile_size
    from longtail.models.jigsaw_net import JigsawNet, JigsawNetConfig
    from longtail.models.seed_cnn import count_parameters
    from longtail.runner import (EVAL_BATCH, data_parallel, environment, finish_run, open_run, prepare_data,
                                 restore_state, start_process)
    from longtail.runs import RunDir, save_checkpoint
    from longtail.train import FitOptions, build_optimizer, build_scheduler, fit

    if cfg.out is None:
        raise LongtailError("no run directory given (--out DIR)")
    run = RunDir(cfg.out)
    if cfg.resume and run.finished:
        return run.read_summary()
    started = time.time()
    ctx, device = start_process(cfg.device, cfg.threads, cfg.batch_size)
    precision = resolve_precision(cfg.precision, device)
    ds = dataset if dataset is not None else load_dataset(cfg.data)
    channels, height, width = ds.image_shape
    tile = tile_size(height, width, cfg.grid)
    tile_options = TileOptions(gap=cfg.gap, tile_norm=cfg.tile_norm, grayscale=cfg.grayscale)
    if cfg.gap and not cfg.gap < min(tile):
        raise LongtailError(f"gap must be below the tile size ({tile[1]}x{tile[0]} px), got {cfg.gap}")
    # The classifier's own split (same val_size, split_seed, limit_train), so pretraining never
    # sees the images a transferred classifier is selected or tested on.
    data = prepare_data(TrainConfig(data=cfg.data, seed=cfg.seed, split_seed=cfg.split_seed, val_size=cfg.val_size,
                                    limit_train=cfg.limit_train, limit_test=cfg.limit_test), ds)
    torch.manual_seed(cfg.seed)
    net_config = JigsawNetConfig(in_channels=channels, grid=cfg.grid, tile_size=tile)
    model = JigsawNet(net_config).to(device).to(memory_format=torch.channels_last)

    mean, std = channel_stats(data.train_images)
    common = dict(mean=mean, std=std, device=device)
    # Training is sharded over torchrun's ranks; evaluation is not: every rank scores the whole
    # split with the same weights (and rank 0's BatchNorm statistics), so the figures agree.
    train = BatchLoader(data.train_images, data.train_labels, cfg.batch_size // ctx.world_size, shuffle=True,
                        seed=cfg.seed, augment=compose(cfg.augment), rank=ctx.rank, world_size=ctx.world_size,
                        **common)
    val = BatchLoader(data.val_images, data.val_labels, EVAL_BATCH, **common)
    test = BatchLoader(data.test_images, data.test_labels, EVAL_BATCH, **common)

    task = JigsawTask(cfg.grid, tile_options, cfg.sinkhorn_iters, cfg.tau)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.lr, cfg.epochs * len(train))

    config_record = {**cfg.to_dict(), "precision_used": precision, "device_used": str(device),
                     "dataset_fingerprint": ds.fingerprint, "world_size": ctx.world_size}
    open_run(run, config_record, cfg.resume, ctx)
    state = restore_state(run, "jigsaw", model, optimizer, scheduler) if cfg.resume else None
    arch = {"name": "JigsawNet", **net_config.to_dict()}

    def save(s) -> None:
        save_checkpoint(run.checkpoint_path, {
            "kind": "jigsaw", "arch": arch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None, "fit_state": s.to_dict(),
            "normalization": {"mean": mean, "std": std}, "config": cfg.to_dict()})

    state = fit(data_parallel(model, ctx, device), task, train, val, optimizer, scheduler,
                FitOptions(cfg.epochs, precision, device, cfg.seed, progress=not cfg.quiet and ctx.is_main,
                           checkpoint_every=cfg.checkpoint_every),
                state=state, save=save if ctx.is_main else None,
                log_epoch=(lambda s: run.write_metrics(s.history)) if ctx.is_main else None)

    model.load_state_dict(state.best_model)
    test_figures = task.evaluate(model, test, precision)
    test_figures.pop("score")
    best_row = state.history[state.best_epoch]
    summary = {
        "finished": True,
        "task": cfg.task,
        "best_epoch": state.best_epoch + 1,
        "epochs": cfg.epochs,
        **{k: v for k, v in best_row.items() if k.startswith("val_")},
        **{f"test_{k}": v for k, v in test_figures.items()},
        # The seed report's figures: the best value of each metric over epochs, on validation.
        "best_over_epochs": {k: (min if k == "val_loss" else max)(r[k] for r in state.history)
                             for k in best_row if k.startswith("val_")},
        "grid": cfg.grid,
        "arch": arch,
        "n_train": int(data.train_labels.numel()),
        "n_val": int(data.val_labels.numel()),
        "n_test": int(data.test_labels.numel()),
        "n_params": count_parameters(model),
        "images_per_s": sum(r["images_per_s"] for r in state.history) / len(state.history),
        "wall_seconds": time.time() - started,
        "dataset": {"name": ds.name, "fingerprint": ds.fingerprint, "image_shape": list(ds.image_shape)},
        **environment(device, precision),
    }
    if cfg.resume:
        summary["resumed"] = True
    return finish_run(run, summary, save, state, ctx)
