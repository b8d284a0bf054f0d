"""The one run lifecycle, whatever the task: settings -> run folder -> device -> data -> task ->
fit -> test with the epoch chosen on validation -> summary.json.

A task (``longtail.tasks``) supplies the model, how a batch becomes a loss, how a split is
scored and its part of the summary; everything else is here, once.
"""

from __future__ import annotations

import platform
import resource
import sys
import time

import torch

import longtail
from longtail import curves, distributed
from longtail.config import RunSettings
from longtail.data.augment import compose
from longtail.data.loader import BatchLoader, channel_stats, eval_batch_size
from longtail.data.sources import ImageDataset, dataset_for
from longtail.device import resolve_device, resolve_precision
from longtail.engine import FitOptions, FitState, build_optimizer, build_scheduler, fit
from longtail.errors import LongtailError
from longtail.runs import RunDir, load_checkpoint, save_checkpoint
from longtail.settings import run_neutral_keys, setting_defaults
from longtail.tasks import TASKS
from longtail.tasks.base import RunTask



def run(cfg: RunSettings, dataset: ImageDataset | None = None) -> dict:
    """Train ``cfg``'s task, select on validation, test, and write the run folder ``cfg.out``.
    Returns the summary. With ``cfg.resume`` a finished run is checked and its summary returned."""
    task_cls = TASKS.get_entry(cfg.task)
    task_cls.check_settings(cfg)
    if cfg.tensorboard:
        curves.check_available()
    if not cfg.out:
        raise LongtailError("no run directory given (--out DIR)")
    folder = RunDir(cfg.out)
    folder.check_usable(cfg.resume)
    started = time.time()
    ctx, device = start_process(cfg.device, cfg.threads, cfg.batch_size)
    with folder.locked(enabled=ctx.is_main):
        precision = resolve_precision(cfg.precision, device)
        ds = dataset_for(cfg, dataset)  # a study's dataset when it was loaded with cfg's size and splits
        record = config_record(cfg, ds.fingerprint, precision, device, ctx.world_size)
        if cfg.resume and folder.config_path.exists():
            check_resumable(folder, record, run_neutral_keys(type(cfg)), setting_defaults(type(cfg)))
            if folder.finished:
                return folder.read_summary()
        return _train(cfg, task_cls, folder, ds, record, precision, device, ctx, started)


def _train(cfg: RunSettings, task_cls: type[RunTask], folder: RunDir, ds: ImageDataset, record: dict,
           precision: str, device: torch.device, ctx: distributed.DistContext, started: float) -> dict:
    data = task_cls.prepare(cfg, ds)
    torch.manual_seed(cfg.seed)
    task = task_cls(cfg, ds, data, device, ctx)
    model = task.model

    mean, std = channel_stats(data.train_images)
    # Under torchrun each rank takes every world_size-th sample of the same order: with the global
    # batch split evenly, the ranks' step-k batches together are exactly a single process's batch k.
    shards = dict(rank=ctx.rank, world_size=ctx.world_size)
    common = dict(mean=mean, std=std, device=device)
    train = BatchLoader(data.train_images, data.train_labels, cfg.batch_size // ctx.world_size, shuffle=True,
                        seed=cfg.seed, augment=compose(cfg.augment), index_order=data.index_order,
                        copy_mask=data.copy_mask, copy_augment=data.copy_augment, **shards, **common)
    eval_shards = shards if task.shard_eval else {}
    eval_batch = eval_batch_size(*ds.image_shape[1:])
    val = BatchLoader(data.val_images, data.val_labels, eval_batch, **eval_shards, **common)
    test = BatchLoader(data.test_images, data.test_labels, eval_batch, **eval_shards, **common)

    optimizer = scheduler = None
    if task.trains:
        slow, slow_scale = task.slow_layers()
        optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum,
                                    slow=slow, slow_scale=slow_scale)
        scheduler = build_scheduler(optimizer, cfg.schedule, cfg.lr, train.total_steps(cfg.epochs))

    if ctx.is_main:
        folder.prepare(record, resume=cfg.resume)
    distributed.barrier()
    # A search (nothing trained) starts over from the task's own weights: it is quick, and its
    # checkpoint holds the chosen candidate, not a point to continue from.
    state = restore_state(folder, task.kind, model, optimizer, scheduler) if cfg.resume and task.trains \
        else FitState()
    board = curves.TensorBoardCurves(folder.path / "tensorboard") if cfg.tensorboard and ctx.is_main else None

    def log_epoch(s: FitState) -> None:
        folder.write_metrics(s.history)
        row = s.history[-1]
        if not cfg.quiet:
            print(curves.epoch_line(row, cfg.epochs, task.epoch_figures(row)), file=sys.stderr, flush=True)
        if board is not None:
            board.add(row)

    def save(s: FitState) -> None:
        save_checkpoint(folder.checkpoint_path, {
            "kind": task.kind, "arch": task.arch, "model": model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None, "fit_state": s.to_dict(),
            "normalization": {"mean": mean, "std": std}, "config": cfg.to_dict(), **task.checkpoint_extras()})

    if task.trains:
        state = fit(data_parallel(model, ctx, device), task, train, val, optimizer, scheduler,
                    FitOptions(cfg.epochs, precision, device, cfg.seed, progress=not cfg.quiet and ctx.is_main,
                               checkpoint_every=cfg.checkpoint_every),
                    state=state, save=save if ctx.is_main else None,
                    log_epoch=log_epoch if ctx.is_main else None,
                    extra_eval=lambda m: task.epoch_extras(m, test, precision))
    else:
        state = task.search(model, val, test, precision)
        if ctx.is_main:
            folder.write_metrics([])  # no epochs; the task's summary records the candidates

    if board is not None:
        board.close()
    model.load_state_dict(state.best_model)
    task.finish(model)
    task.tune_on_validation(model, val, precision)
    rates = [r["images_per_s"] for r in state.history if "images_per_s" in r]
    summary = {
        "finished": True,
        "best_epoch": state.best_epoch + 1,
        "epochs": cfg.epochs,
        **task.summary(model, test, precision, state, data),
        # which training images the run kept (after limit_train and imbalance): equal for a classifier
        # and the pretraining a study gives its data (data_from)
        "kept_indices_hash": data.kept_hash,
        "n_train": int(data.train_labels.numel()),
        "n_val": int(data.val_labels.numel()),
        "n_test": int(data.test_labels.numel()),
        "n_params": task.n_params(),
        "images_per_s": sum(rates) / len(rates) if rates else None,  # training throughput
        "wall_seconds": time.time() - started,
        "dataset": {"name": ds.name, "fingerprint": ds.fingerprint, "image_shape": list(ds.image_shape)},
        **environment(device, precision),
        "world_size": ctx.world_size,
    }
    if cfg.resume:
        # wall time of a resumed run covers only the last process; the epochs' own seconds add up the rest
        summary["resumed"] = True
    if ctx.is_main:
        save(state)  # the final checkpoint's "model" is the selected weights, what was tested
        folder.write_summary(summary)
    distributed.barrier()
    return summary


def config_record(cfg: RunSettings, fingerprint: str, precision: str, device: torch.device | str,
                  world_size: int) -> dict:
    """What config.json holds: every setting, and what decided the numbers beyond them."""
    return {**cfg.to_dict(), "precision_used": precision, "device_used": str(device),
            "dataset_fingerprint": fingerprint, "world_size": world_size}


def check_resumable(folder: RunDir, record: dict, neutral: set[str], defaults: dict) -> None:
    """Refuse to continue (or to report as done) a run made with other settings or data; the
    ``neutral`` settings (where it runs, how it reports) may differ. A setting added since the run
    was made is absent from its config.json: it matches while it has its default (``defaults``),
    which is what the older version did."""
    stored = folder.read_config()
    for key in sorted(set(stored) | set(record)):
        if key in neutral or stored.get(key) == record.get(key):
            continue
        if key not in stored and key in defaults and record.get(key) == defaults[key]:
            continue
        if key == "dataset_fingerprint":
            raise LongtailError(f"cannot resume {folder.path}: it was made with other data (fingerprint "
                                f"{str(stored.get(key))[:16]}, now {str(record.get(key))[:16]}); give its --data or "
                                "choose another --out")
        raise LongtailError(f"cannot resume {folder.path}: it was made with {key}={stored.get(key)!r}, "
                            f"now {key}={record.get(key)!r}; choose another --out for new settings")


def restore_state(folder: RunDir, kind: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler) -> FitState:
    """Load the run's last checkpoint into model, optimizer and scheduler; a fresh state if none."""
    if not folder.checkpoint_path.exists():
        return FitState()
    ckpt = load_checkpoint(folder.checkpoint_path)
    if ckpt.get("kind") != kind:
        raise LongtailError(f"{folder.checkpoint_path} is a {ckpt.get('kind')} checkpoint; cannot resume a {kind} "
                            "run from it")
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        return FitState.from_dict(ckpt["fit_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise LongtailError(f"{folder.checkpoint_path} does not fit this run's model ({first}); it holds another "
                            "architecture or class count") from None


def environment(device: torch.device, precision: str) -> dict:
    """Where a run ran, for its summary: device, precision, threads, versions."""
    return {
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()),
        "precision": precision,
        "threads": torch.get_num_threads(),
        # Peak resident memory of the whole process so far (in a study: of all its runs so far).
        "peak_rss_mib_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "versions": {"longtail": longtail.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }


def start_process(device_name: str, threads: int | None, batch_size: int
                  ) -> tuple[distributed.DistContext, torch.device]:
    """Join torchrun's process group if there is one, set threads, choose the device."""
    ctx, device_name = distributed.setup(device_name)
    threads = threads or distributed.default_threads(ctx)
    if threads:
        torch.set_num_threads(threads)
    if batch_size % ctx.world_size:
        raise LongtailError(f"batch_size {batch_size} does not split evenly over {ctx.world_size} processes")
    return ctx, resolve_device(device_name)


def data_parallel(model: torch.nn.Module, ctx: distributed.DistContext, device: torch.device) -> torch.nn.Module:
    if not ctx.enabled:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
