"""The one training loop: every task (classification, pretext tasks) trains through :func:`fit`.

A task says how a batch becomes a loss and how a split is evaluated; the loop owns
everything else: precision, the optimizer and schedule, progress, checkpoints, model selection
on validation, resume, and stopping cleanly on a signal or a non-finite loss.
"""

from __future__ import annotations

import copy
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from longtail.data.loader import BatchLoader
from longtail.device import autocast, synchronize
from longtail.distributed import all_reduce_sum, any_rank, broadcast_buffers
from longtail.errors import LongtailError, TrainingInterrupted
from longtail.registry import Registry


class Task(Protocol):
    def start_epoch(self, epoch: int) -> None: ...

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_seed: tuple) -> torch.Tensor: ...

    def evaluate(self, model: nn.Module, loader: BatchLoader, precision: str) -> dict: ...


@dataclass
class FitState:
    """Where training stands; everything needed to continue exactly."""

    epoch: int = 0  # the epoch in progress (or the next to start)
    step: int = 0  # the next step within that epoch
    loss_sum: float = 0.0  # running training loss of the epoch in progress
    seen: int = 0
    train_seconds: float = 0.0
    best_score: float = -math.inf
    best_epoch: int = -1
    best_model: dict | None = None
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(epoch=self.epoch, step=self.step, loss_sum=self.loss_sum, seen=self.seen,
                    train_seconds=self.train_seconds, best_score=self.best_score, best_epoch=self.best_epoch,
                    best_model=self.best_model, history=self.history)

    @classmethod
    def from_dict(cls, d: dict) -> FitState:
        return cls(**d)


@dataclass
class FitOptions:
    epochs: int
    precision: str
    device: torch.device
    seed: int = 0
    progress: bool = True
    checkpoint_every: int | None = None  # steps; epochs always end with a checkpoint
    max_grad_norm: float | None = None


def fit(model: nn.Module, task: Task, train: BatchLoader, val: BatchLoader, optimizer: torch.optim.Optimizer,
        scheduler: Any, options: FitOptions, *, state: FitState | None = None,
        save: Callable[[FitState], None] | None = None, log_epoch: Callable[[FitState], None] | None = None,
        extra_eval: Callable[[nn.Module], dict] | None = None) -> FitState:
    """Train ``model`` for ``options.epochs`` epochs, selecting the best epoch on ``val``.

    ``save(state)`` is called at every checkpoint (end of each epoch, every ``checkpoint_every``
    steps, and on SIGINT/SIGTERM); ``log_epoch(state)`` after each epoch's history row is added.
    ``extra_eval(model)`` adds figures to each epoch's row (the seed's per-epoch test accuracy).
    """
    state = state or FitState()
    stop = _StopFlag()
    module = getattr(model, "module", model)  # the bare model inside DistributedDataParallel
    with stop.installed():
        while state.epoch < options.epochs:
            epoch = state.epoch
            model.train()
            task.start_epoch(epoch)  # after train(): a task may put parts back in eval mode (a frozen trunk)
            steps = train.steps_in(epoch)
            bar = tqdm(total=steps, initial=state.step, desc=f"epoch {epoch + 1}/{options.epochs}", unit="batch",
                       disable=not options.progress, leave=False, dynamic_ncols=True, mininterval=0.5)
            synchronize(options.device)
            t0 = time.perf_counter()
            seen_at_start = state.seen
            for x, y in train.epoch(epoch, start_step=state.step):
                with autocast(options.device, options.precision):
                    loss = task.training_loss(model, x, y, (options.seed, epoch, state.step))
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise LongtailError(f"the training loss became {value} at epoch {epoch + 1}, step {state.step + 1}; "
                                        "the last good checkpoint is kept (try a lower --lr)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if options.max_grad_norm:
                    nn.utils.clip_grad_norm_(model.parameters(), options.max_grad_norm)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                n = int(x.shape[0])
                state.loss_sum += value * n
                state.seen += n
                state.step += 1
                bar.update(1)
                if bar.n % 10 == 0 or state.step == steps:
                    rate = (state.seen - seen_at_start) / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{state.loss_sum / max(state.seen, 1):.4f}", img_s=f"{rate:.0f}")
                stop_now = any_rank(stop.requested)  # every rank must leave at the same step
                if stop_now or (options.checkpoint_every and state.step % options.checkpoint_every == 0
                                      and state.step < steps):
                    synchronize(options.device)
                    state.train_seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    seen_at_start = state.seen
                    if save is not None:
                        save(state)
                    if stop_now:
                        bar.close()
                        raise TrainingInterrupted(
                            f"stopped by {stop.signal_name or 'another rank'} at epoch {epoch + 1}, step {state.step}")
            synchronize(options.device)
            epoch_seconds = state.train_seconds + time.perf_counter() - t0
            bar.close()
            broadcast_buffers(module)  # every rank evaluates with rank 0's BatchNorm statistics
            row = _epoch_row(state, epoch, optimizer, epoch_seconds, task.evaluate(module, val, options.precision))
            loss_sum, seen = all_reduce_sum(torch.tensor([state.loss_sum, float(state.seen)], dtype=torch.float64)).tolist()
            row["train_loss"], row["images_per_s"] = loss_sum / max(seen, 1), seen / max(epoch_seconds, 1e-9)
            if extra_eval is not None:
                row.update(extra_eval(module))
            if not math.isfinite(row.get("val_loss", 0.0)):
                # the last step of the epoch left non-finite weights: nothing of this epoch is kept
                raise LongtailError(f"the validation loss became {row['val_loss']} after epoch {epoch + 1}; the "
                                    "weights diverged and the last good checkpoint is kept (try a lower --lr)")
            score = row.pop("_score")
            if score > state.best_score:
                state.best_score, state.best_epoch = score, epoch
                state.best_model = copy.deepcopy(module.state_dict())
            state.history.append(row)
            state.epoch, state.step, state.loss_sum, state.seen, state.train_seconds = epoch + 1, 0, 0.0, 0, 0.0
            if save is not None:
                save(state)
            if log_epoch is not None:
                log_epoch(state)
    return state


def _epoch_row(state: FitState, epoch: int, optimizer, seconds: float, val: dict) -> dict:
    row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
           "train_loss": state.loss_sum / max(state.seen, 1), "seconds": seconds,
           "images_per_s": state.seen / max(seconds, 1e-9)}
    row["_score"] = val.pop("score")
    row.update({f"val_{k}": v for k, v in val.items() if not isinstance(v, list)})
    return row


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self):
        self.requested = False
        self.signal_name = ""

    def _handle(self, signum, frame):
        if self.requested:  # a second Ctrl-C means now
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def installed(self):
        import contextlib
        import threading

        @contextlib.contextmanager
        def ctx():
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h)

        return ctx()


def _adam(groups: list[dict], lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)


def _sgd(groups: list[dict], lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0, weight_decay=weight_decay)


def _sgd_momentum(groups: list[dict], lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    # plain (heavy-ball) momentum, as Cao et al.'s CIFAR code (torch.optim.SGD's default) and so the
    # "lt" recipe: Nesterov's look-ahead is our "fast" recipe's choice, not the papers'
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=False, weight_decay=weight_decay)


OPTIMIZERS = Registry("optimizer", {"adam": _adam, "sgd": _sgd, "sgd-momentum": _sgd_momentum})


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float = 0.9,
                    slow: set[str] = frozenset(), slow_scale: float = 1.0) -> torch.optim.Optimizer:
    """The optimizer over the trainable parameters; those of the child modules named in ``slow``
    (the transferred layers) get ``lr * slow_scale`` in a second parameter group. The first group
    holds the rest, so the logged lr stays the recipe's."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise LongtailError("no trainable parameters (all layers frozen?)")
    slow_ids = ({id(p) for n, m in model.named_children() if n in slow for p in m.parameters()}
                if slow_scale != 1.0 else set())
    groups = [{"params": [p for p in params if id(p) not in slow_ids]},
              {"params": [p for p in params if id(p) in slow_ids], "lr": lr * slow_scale}]
    groups = [g for g in groups if g["params"]]
    return OPTIMIZERS.get_entry(name)(groups, lr, weight_decay, momentum)


def _constant(optimizer: torch.optim.Optimizer, total_steps: int):
    return None


def _onecycle(optimizer: torch.optim.Optimizer, total_steps: int):
    # Linear warm-up from lr/10 over the first quarter, then linear decay to zero at the last
    # step. (OneCycleLR extrapolates past its last step, which shows as a negative logged lr.)
    warm = max(1, int(0.25 * total_steps))

    def factor(step: int) -> float:
        if step < warm:
            return 0.1 + 0.9 * step / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _cosine(optimizer: torch.optim.Optimizer, total_steps: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


# Cao et al. 2019's CIFAR schedule (LDAM-DRW, cifar_train.py, adjust_learning_rate), on its 200-epoch grid.
LT_EPOCHS, LT_WARMUP, LT_DECAYS = 200, 5, ((180, 1e-4), (160, 1e-2))


def lt_factor(epoch: int) -> float:
    """Their rate for 0-based ``epoch`` over the peak: ``epoch = epoch + 1``; lr * epoch / 5 while
    epoch <= 5 (a per-epoch staircase from lr/5 to lr), x0.0001 when epoch > 180, x0.01 when > 160."""
    e = epoch + 1
    if e <= LT_WARMUP:
        return e / LT_WARMUP
    for after, factor in LT_DECAYS:
        if e > after:
            return factor
    return 1.0


def _lt(optimizer: torch.optim.Optimizer, total_steps: int):
    # Stepped per batch but constant within an epoch, as theirs is. A run of other length than 200
    # epochs keeps the proportions: step s is in epoch floor(s * 200 / total_steps) of the grid.
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lt_factor(min(step * LT_EPOCHS // max(total_steps, 1), LT_EPOCHS - 1)))


SCHEDULES = Registry("schedule", {"constant": _constant, "onecycle": _onecycle, "cosine": _cosine, "lt": _lt})


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, lr: float, total_steps: int):
    """A per-step scheduler, or None for a constant rate."""
    return SCHEDULES.get_entry(name)(optimizer, total_steps)
