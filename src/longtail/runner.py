"""From a :class:`TrainConfig` to a finished run directory: the data flow of one classifier run.

source -> validation split -> subset -> imbalance -> rebalance -> loaders -> model -> loss
-> fit -> test with the checkpoint chosen on validation -> summary.json
"""

from __future__ import annotations

import platform
import resource
import time
from dataclasses import dataclass

import torch

import longtail
from longtail.classify import ClassificationTask
from longtail.config import TrainConfig
from longtail import distributed
from longtail.data.augment import compose
from longtail.data.imbalance import apply_profile, indices_hash
from longtail.data.loader import BatchLoader, channel_stats, derived_generator
from longtail.data.rebalance import rebalance
from longtail.data.sources import ImageDataset, load_dataset
from longtail.data.split import stratified_take, train_val_split
from longtail.device import resolve_device, resolve_precision
from longtail.errors import LongtailError
from longtail.losses import LossContext, build_loss
from longtail.metrics import accuracy, classification_report
from longtail.models.seed_cnn import SeedCNN, SeedCNNConfig, count_parameters
from longtail.runs import RunDir, load_checkpoint, save_checkpoint
from longtail.train import FitOptions, FitState, build_optimizer, build_scheduler, fit
from longtail.transfer import init_from_jigsaw, transferred_layers

EVAL_BATCH = 1024


@dataclass
class PreparedData:
    """The splits of one run, after the imbalance profile and rebalancing."""

    classes: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
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


def prepare_data(cfg: TrainConfig, ds: ImageDataset) -> PreparedData:
    c = ds.num_classes
    train_idx, val_idx = train_val_split(ds.train_labels, cfg.val_size or default_val_size(len(ds.train_labels)),
                                         c, cfg.split_seed)
    if cfg.limit_train is not None and cfg.limit_train < train_idx.numel():
        sub = stratified_take(ds.train_labels[train_idx], cfg.limit_train, c,
                              torch.Generator().manual_seed(cfg.split_seed + 1))
        train_idx = train_idx[sub]
    if cfg.imbalance:
        kept = apply_profile(ds.train_labels[train_idx], cfg.imbalance, c, derived_generator(cfg.seed, 0x1B))
        train_idx = train_idx[kept]
    labels = ds.train_labels[train_idx]
    kept_counts = torch.bincount(labels, minlength=c).tolist()
    if min(kept_counts) == 0:
        empty = kept_counts.index(0)
        raise LongtailError(f"class {ds.classes[empty]!r} has no training samples left "
                            "(raise --limit-train or change the imbalance profile)")
    rb = rebalance(cfg.rebalance, ds.train_images[train_idx], labels, c, derived_generator(cfg.seed, 0x2B))
    test_images, test_labels = ds.test_images, ds.test_labels
    if cfg.limit_test is not None and cfg.limit_test < test_labels.numel():
        sub = stratified_take(test_labels, cfg.limit_test, c, torch.Generator().manual_seed(cfg.split_seed + 2))
        test_images, test_labels = test_images[sub], test_labels[sub]
    return PreparedData(ds.classes, rb.images, rb.labels, ds.train_images[val_idx], ds.train_labels[val_idx],
                        test_images, test_labels, kept_counts, indices_hash(train_idx), rb.index_order,
                        rb.copy_mask, rb.copy_augment)


def build_model(cfg: TrainConfig, ds: ImageDataset) -> SeedCNN:
    ch, h, w = ds.image_shape
    try:
        return SeedCNN(SeedCNNConfig(in_channels=ch, num_classes=ds.num_classes, image_size=(h, w), padding=cfg.padding,
                                     head=cfg.head))
    except ValueError as e:
        raise LongtailError(f"{e} ({w}x{h} px with padding {cfg.padding!r})") from None


def restore_state(run: RunDir, kind: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler) -> FitState:
    """Load the run's last checkpoint into model, optimizer and scheduler; a fresh state if none.
    Shared by classifier and jigsaw runs (``kind`` guards against resuming the other's folder)."""
    if not run.checkpoint_path.exists():
        return FitState()
    ckpt = load_checkpoint(run.checkpoint_path)
    if ckpt.get("kind") != kind:
        raise LongtailError(f"{run.checkpoint_path} is a {ckpt.get('kind')} checkpoint; cannot resume a {kind} run from it")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    return FitState.from_dict(ckpt["fit_state"])


def environment(device: torch.device, precision: str) -> dict:
    """Where a run ran, for its summary: device, precision, threads, versions."""
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
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


def open_run(run: RunDir, config_record: dict, resume: bool, ctx: distributed.DistContext) -> None:
    """Check a resumed run's settings on every rank; create the folder on rank 0 alone."""
    if resume and run.config_path.exists():
        check_same_run(run.read_config(), config_record, run)
    if ctx.is_main:
        run.prepare(config_record, resume=resume)
    distributed.barrier()


def data_parallel(model: torch.nn.Module, ctx: distributed.DistContext, device: torch.device) -> torch.nn.Module:
    if not ctx.enabled:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def finish_run(run: RunDir, summary: dict, save, state: FitState, ctx: distributed.DistContext) -> dict:
    """Write the final checkpoint (its "model" is the selected weights, what was tested) and summary."""
    summary["world_size"] = ctx.world_size
    if ctx.is_main:
        save(state)
        run.write_summary(summary)
    distributed.barrier()
    return summary


# Settings that may differ between a run and its resumption without changing its numbers.
VOLATILE_KEYS = {"resume", "quiet", "threads", "out", "data"}


def check_same_run(stored: dict, current: dict, run: RunDir) -> None:
    for key in sorted(set(stored) | set(current)):
        if key not in VOLATILE_KEYS and stored.get(key) != current.get(key):
            raise LongtailError(f"cannot resume {run.path}: it was started with {key}={stored.get(key)!r}, "
                                f"now {key}={current.get(key)!r}")


def run_training(cfg: TrainConfig, dataset: ImageDataset | None = None) -> dict:
    """Train, select on validation, test, and write the run directory. Returns the summary."""
    if cfg.out is None:
        raise LongtailError("no run directory given (--out DIR)")
    run = RunDir(cfg.out)
    if cfg.resume and run.finished:
        return run.read_summary()
    started = time.time()
    ctx, device = start_process(cfg.device, cfg.threads, cfg.batch_size)
    precision = resolve_precision(cfg.precision, device)
    ds = dataset if dataset is not None else load_dataset(cfg.data)
    data = prepare_data(cfg, ds)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, ds).to(device).to(memory_format=torch.channels_last)
    transfer_log = None
    if cfg.init:
        transfer_log = init_from_jigsaw(model, cfg.init, freeze=cfg.transfer == "freeze", layers=cfg.transfer_layers)
        transfer_log["lr_scale"] = cfg.transfer_lr_scale if cfg.transfer == "finetune" else 0.0

    if cfg.sync_bn:
        if device.type != "cuda" or not ctx.enabled:
            raise LongtailError("--sync-bn needs several CUDA processes (torchrun on GPUs); PyTorch's SyncBatchNorm has no CPU version")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)

    mean, std = channel_stats(data.train_images)
    # Under torchrun each rank takes every world_size-th sample of the same order: with the global
    # batch split evenly, the ranks' step-k batches together are exactly a single process's batch k.
    common = dict(mean=mean, std=std, device=device, rank=ctx.rank, world_size=ctx.world_size)
    train = BatchLoader(data.train_images, data.train_labels, cfg.batch_size // ctx.world_size, shuffle=True,
                        seed=cfg.seed,
                        augment=compose(cfg.augment), index_order=data.index_order,
                        copy_mask=data.copy_mask, copy_augment=data.copy_augment, **common)
    val = BatchLoader(data.val_images, data.val_labels, EVAL_BATCH, **common)
    test = BatchLoader(data.test_images, data.test_labels, EVAL_BATCH, **common)

    loss_fn = build_loss(cfg.loss, LossContext(torch.tensor(data.train_counts), cfg.epochs, cfg.label_smoothing,
                                               cfg.loss_params)).to(device)
    task = ClassificationTask(loss_fn, ds.num_classes, getattr(loss_fn, "posthoc_adjustment", None))
    slow = set(transferred_layers(cfg.transfer_layers)) if cfg.init and cfg.transfer == "finetune" else set()
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum,
                                slow=slow, slow_scale=cfg.transfer_lr_scale)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.lr, cfg.epochs * len(train))

    config_record = {**cfg.to_dict(), "precision_used": precision, "device_used": str(device),
                     "dataset_fingerprint": ds.fingerprint, "world_size": ctx.world_size}
    open_run(run, config_record, cfg.resume, ctx)
    state = restore_state(run, "classifier", model, optimizer, scheduler) if cfg.resume else FitState()

    arch = {"name": "SeedCNN", **model.config.to_dict()}

    def save(s: FitState) -> None:
        save_checkpoint(run.checkpoint_path, {
            "kind": "classifier", "arch": arch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None, "fit_state": s.to_dict(),
            "classes": ds.classes, "normalization": {"mean": mean, "std": std}, "config": cfg.to_dict()})

    def test_acc(m) -> dict:
        return {"test_acc": accuracy(task.confusion(m, test, precision)[0])}

    state = fit(data_parallel(model, ctx, device), task, train, val, optimizer, scheduler,
                FitOptions(cfg.epochs, precision, device, cfg.seed, progress=not cfg.quiet and ctx.is_main,
                           checkpoint_every=cfg.checkpoint_every),
                state=state, save=save if ctx.is_main else None,
                log_epoch=(lambda s: run.write_metrics(s.history)) if ctx.is_main else None, extra_eval=test_acc)

    model.load_state_dict(state.best_model)
    test_cm, test_loss = task.confusion(model, test, precision)
    report = classification_report(test_cm)
    best_row = state.history[state.best_epoch]
    summary = {
        "finished": True,
        "best_epoch": state.best_epoch + 1,
        "epochs": cfg.epochs,
        "val_acc": best_row["val_acc"],
        "val_balanced_acc": best_row["val_balanced_acc"],
        "test_acc": report["acc"],
        "test_balanced_acc": report["balanced_acc"],
        "test_macro_f1": report["macro_f1"],
        "test_loss": test_loss,
        "per_class_acc": report["per_class_acc"],
        "confusion": report["confusion"],
        "best_test_acc_over_epochs": max(r["test_acc"] for r in state.history),
        "classes": ds.classes,
        "train_class_counts": data.train_counts,
        "kept_class_counts": data.kept_counts,
        "kept_indices_hash": data.kept_hash,
        "n_train": int(data.train_labels.numel()),
        "n_val": int(data.val_labels.numel()),
        "n_test": int(data.test_labels.numel()),
        "n_params": count_parameters(model),
        "images_per_s": sum(r["images_per_s"] for r in state.history) / len(state.history),
        "wall_seconds": time.time() - started,
        "dataset": {"name": ds.name, "fingerprint": ds.fingerprint, "image_shape": list(ds.image_shape)},
        **environment(device, precision),
    }
    if transfer_log is not None:
        summary["transfer"] = transfer_log
    if cfg.resume:
        # wall time of a resumed run covers only the last process; the epochs' own seconds add up the rest
        summary["resumed"] = True
    return finish_run(run, summary, save, state, ctx)
