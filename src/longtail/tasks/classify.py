"""Classification: a batch -> logits -> the run's loss; a split -> confusion matrix and metrics.

The model is the one ``--model`` names (:mod:`longtail.models`), optionally started from a weights
file (``--pretrained``, :mod:`longtail.models.pretrained`) or another run's checkpoint (``--init``,
:mod:`longtail.transfer`); the loss comes from the loss registry with the training set's class
counts; post-hoc logit adjustment (Menon et al. 2021) subtracts tau*log(prior) at prediction time,
with tau given or chosen on the validation split (:mod:`longtail.tasks.posthoc`). With ``--mix`` the
training batches are mixed pairs (mixup, Remix: :mod:`longtail.tasks.mixing`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from longtail.config import TrainConfig, default_head
from longtail.data.loader import BatchLoader
from longtail.data.prepare import PreparedData
from longtail.device import autocast
from longtail.distributed import DistContext, all_reduce_sum
from longtail.engine import FitState
from longtail.errors import LongtailError
from longtail.losses import LossContext, build_loss, init_output_bias
from longtail.metrics import (accuracy, accuracy_by_class_size, accuracy_by_thirds, calibration_bins,
                              classification_report, confusion_matrix, expected_calibration_error)
from longtail.models import ModelRequest, build_from_arch, model_arch, split_model_name
from longtail.models import build_model as build_net
from longtail.models.pretrained import load_pretrained
from longtail.settings import setting_defaults
from longtail.tasks.base import RunTask
from longtail.tasks.mixing import MixContext, build_mix, mix_step, mixed_loss
from longtail.tasks.posthoc import search_tau
from longtail.transfer import check_init, check_transfer_layers, init_from_checkpoint


def run_head(cfg: TrainConfig) -> str:
    """The head the run trains: --head, or when unset what the loss needs (config.default_head)."""
    return cfg.head or default_head(cfg.loss)


def build_model(cfg: TrainConfig, ds) -> tuple[nn.Module, dict]:
    """The untrained ``--model`` for the data ``ds``, and the arch record that rebuilds it."""
    ch, h, w = ds.image_shape
    return build_net(cfg.model, ModelRequest(in_channels=ch, num_classes=ds.num_classes, image_size=(h, w),
                                             head=run_head(cfg), padding=cfg.padding))


@torch.no_grad()
def confusion(model: nn.Module, loader: BatchLoader, precision: str, num_classes: int,
              logit_adjustment: torch.Tensor | None = None, logit_scale: float = 1.0) -> tuple[torch.Tensor, float]:
    """(confusion matrix, mean plain cross-entropy) over the whole split, on the network's outputs
    times ``logit_scale`` (the loss's view of them: LDAM's s); ``logit_adjustment`` is subtracted
    from the logits before the argmax (post-hoc logit adjustment).

    Under torchrun each rank sees a share of the split; the matrices and loss sums are added
    across ranks, so the figures are those of the whole split, not averages of averages.
    """
    was_training = model.training
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum = torch.zeros((), dtype=torch.float64)
    for x, y in loader.epoch(0):
        with autocast(loader.device, precision):
            logits = model(x).float() * logit_scale
        # Validation loss is plain cross-entropy for every arm, so curves compare across losses.
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double().cpu()
        if logit_adjustment is not None:
            logits = logits - logit_adjustment.to(logits.device)
        cm += confusion_matrix(y, logits.argmax(dim=1), num_classes)
    model.train(was_training)
    cm = all_reduce_sum(cm)
    total = float(all_reduce_sum(loss_sum))
    return cm, total / max(int(cm.sum()), 1)


@torch.no_grad()
def calibration(model: nn.Module, loader: BatchLoader, precision: str, num_bins: int,
                logit_adjustment: torch.Tensor | None = None, logit_scale: float = 1.0) -> torch.Tensor:
    """The split's calibration bins (:func:`longtail.metrics.calibration_bins`) of the softmax
    confidence of the predicted class, for the predictions the run reports (post-hoc adjusted
    when the loss asks for it); summed across processes like the confusion matrix. Once, at the
    end: not worth a second pass over the test set every epoch."""
    was_training = model.training
    model.eval()
    bins = torch.zeros(3, num_bins, dtype=torch.float64)
    for x, y in loader.epoch(0):
        with autocast(loader.device, precision):
            logits = model(x).float() * logit_scale
        if logit_adjustment is not None:
            logits = logits - logit_adjustment.to(logits.device)
        conf, pred = torch.softmax(logits, dim=1).max(dim=1)
        bins += calibration_bins(conf, pred == y, num_bins)
    model.train(was_training)
    return all_reduce_sum(bins)


class ClassifyTask(RunTask):
    kind = "classifier"

    @classmethod
    def check_settings(cls, cfg: TrainConfig) -> None:
        family, _ = split_model_name(cfg.model)
        head = run_head(cfg)
        needed = default_head(cfg.loss)
        if needed != "linear" and head != needed:
            raise LongtailError(f"--loss {cfg.loss} needs --head {needed}: it scales the logits by s=30, which assumes "
                                f"cosines in [-1, 1], and with a {head} head it diverges (docs/imbalance.md); leave "
                                f"--head unset or set it to {needed}")
        if family != "seed-cnn" and cfg.padding != "same":
            raise LongtailError(f"--padding {cfg.padding} applies to --model seed-cnn only, not {cfg.model}")
        if head != "linear":
            # a head the network cannot take (tv: models whose classifier is not a Linear layer)
            with torch.device("meta"):
                build_from_arch(model_arch(cfg.model, ModelRequest(head=head)))
        if cfg.init and cfg.pretrained:
            raise LongtailError("--init and --pretrained both set the starting weights; give one of them")
        if cfg.pretrained and not Path(cfg.pretrained).is_file():
            raise LongtailError(f"--pretrained file not found: {cfg.pretrained}")
        if cfg.transfer_layers is not None:
            check_transfer_layers(cfg.model, cfg.transfer_layers)
        if cfg.init:
            check_init(cfg.init, family == "seed-cnn", cfg.transfer_layers, cfg.model)
        if cfg.rebalance_from_epoch and cfg.rebalance_from_epoch >= cfg.epochs:
            raise LongtailError(f"--rebalance-from-epoch {cfg.rebalance_from_epoch} is not before the run's end "
                                f"(epochs 0 to {cfg.epochs - 1}): the rebalancing would never apply")
        if cfg.rebalance_from_epoch and cfg.rebalance == "none":
            raise LongtailError("--rebalance-from-epoch defers a rebalance method, but --rebalance is none")
        check_mix_settings(cfg)

    # The output layer starts fresh, so a loss's initial output bias applies (cb-focal's).
    fresh_output_layer = True

    def __init__(self, cfg: TrainConfig, ds, data: PreparedData, device: torch.device, ctx: DistContext):
        self.cfg = cfg
        self.num_classes = ds.num_classes
        self.classes = ds.classes
        self.transfer_log = self.pretrained_log = None
        model = self.starting_model(cfg, ds, device)
        if cfg.sync_bn:
            if device.type != "cuda" or not ctx.enabled:
                raise LongtailError("--sync-bn needs several CUDA processes (torchrun on GPUs); PyTorch's "
                                    "SyncBatchNorm has no CPU version")
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.loss_fn = build_loss(cfg.loss, LossContext(torch.tensor(data.train_counts), cfg.epochs,
                                                        cfg.label_smoothing, cfg.loss_params)).to(device)
        if self.fresh_output_layer:
            init_output_bias(self.model, self.loss_fn)  # part of cb-focal (Cui et al.): last bias -log(C - 1)
        self.logit_adjustment = getattr(self.loss_fn, "posthoc_adjustment", None)
        self.logit_scale = float(getattr(self.loss_fn, "logit_scale", 1.0))
        self.tau_search: dict | None = None
        # Remix compares class sizes of the imbalanced set itself (the kept counts): an oversampler
        # changes how often a class is seen, not how rare its images are
        self.mix = build_mix(cfg.mix, MixContext(torch.tensor(data.kept_counts), cfg.mix_alpha, cfg.remix_kappa,
                                                 cfg.remix_tau))

    def starting_model(self, cfg: TrainConfig, ds, device: torch.device) -> nn.Module:
        """The network before training, on ``device``: ``--model`` for the data, from the weights
        --pretrained or --init give; sets ``self.arch``."""
        model, self.arch = build_model(cfg, ds)
        model = model.to(device).to(memory_format=torch.channels_last)
        if cfg.pretrained:
            self.pretrained_log = load_pretrained(model, cfg.pretrained, ds.num_classes, cfg.model)
        if cfg.init:
            self.transfer_log = init_from_checkpoint(model, cfg.init, freeze=cfg.transfer == "freeze",
                                                     layers=cfg.transfer_layers, described=cfg.model)
            self.transfer_log["lr_scale"] = cfg.transfer_lr_scale if cfg.transfer == "finetune" else 0.0
        return model

    def slow_layers(self) -> tuple[set[str], float]:
        cfg = self.cfg
        if self.transfer_log is not None and cfg.transfer == "finetune":
            # the layers copied whole; a partly copied layer trains at the full rate
            return {row["name"] for row in self.transfer_log["layers"] if row["status"] == "transferred"}, \
                cfg.transfer_lr_scale
        return set(), 1.0

    def start_epoch(self, epoch: int) -> None:
        if hasattr(self.loss_fn, "set_epoch"):
            self.loss_fn.set_epoch(epoch)

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_seed: tuple) -> torch.Tensor:
        if self.mix is None:
            return self.loss_fn(model(x).float(), y)
        batch = mix_step(self.mix, x, y, step_seed)
        return mixed_loss(self.loss_fn, model(batch.x).float(), batch)

    def tune_on_validation(self, model: nn.Module, val: BatchLoader, precision: str) -> None:
        if not getattr(self.loss_fn, "tau_from_validation", False):
            return
        self.tau_search = search_tau(model, val, precision, self.loss_fn.log_prior)
        self.loss_fn.set_tau(self.tau_search["tau"])
        self.logit_adjustment = self.loss_fn.posthoc_adjustment

    def confusion(self, model: nn.Module, loader: BatchLoader, precision: str) -> tuple[torch.Tensor, float]:
        return confusion(model, loader, precision, self.num_classes, self.logit_adjustment, self.logit_scale)

    def evaluate(self, model: nn.Module, loader: BatchLoader, precision: str) -> dict:
        cm, loss = self.confusion(model, loader, precision)
        report = classification_report(cm)
        return {"loss": loss, **report, "score": report["balanced_acc"]}

    def epoch_extras(self, model: nn.Module, test: BatchLoader, precision: str) -> dict:
        return {"test_acc": accuracy(self.confusion(model, test, precision)[0])}

    @staticmethod
    def epoch_figures(row: dict) -> list[tuple[str, float]]:
        return [("val acc", row["val_acc"]), ("balanced", row["val_balanced_acc"])]

    @staticmethod
    def result_table(summary: dict) -> list[str]:
        """Per class: images trained on (after imbalance and rebalancing) and test recall; then
        minority and majority accuracy (minority: under half the largest class's kept count)."""
        from longtail.data.imbalance import minority_classes

        kept, trained = summary["kept_class_counts"], summary["train_class_counts"]
        recall = summary["per_class_acc"]
        lines = [f"{'class':<20}{'kept':>8}{'trained on':>12}{'test recall':>13}"]
        lines += [f"{name[:19]:<20}{k:>8}{t:>12}{r:>13.4f}"
                  for name, k, t, r in zip(summary["classes"], kept, trained, recall)]
        minority = set(minority_classes(kept))
        groups = [("minority", [r for j, r in enumerate(recall) if j in minority]),
                  ("majority", [r for j, r in enumerate(recall) if j not in minority])]
        lines.append(", ".join(f"{name} acc {sum(rs) / len(rs):.4f} ({len(rs)} class{'es' if len(rs) > 1 else ''})"
                               if rs else f"{name}: none" for name, rs in groups))
        search = summary.get("posthoc_tau")
        if search:
            best = max(search["val_balanced_acc"])
            lines.append(f"post-hoc tau {search['tau']:g}, chosen on validation (balanced acc {best:.4f} over "
                         f"tau {search['grid'][0]:g} to {search['grid'][-1]:g})")
        return lines

    @staticmethod
    def test_figures(summary: dict) -> str:
        return (f"test acc {summary['test_acc']:.4f}, balanced {summary['test_balanced_acc']:.4f}, "
                f"macro-F1 {summary['test_macro_f1']:.4f}")

    @staticmethod
    def headline(summary: dict) -> str:
        return (f"{ClassifyTask.test_figures(summary)} (best epoch {summary['best_epoch']} on validation; "
                f"best test acc over epochs {summary['best_test_acc_over_epochs']:.4f})")

    def checkpoint_extras(self) -> dict:
        # what inference needs beyond the weights: the class names, and the adjustment the run
        # was evaluated with (post-hoc logit adjustment) and the scale its loss puts on the outputs
        # (LDAM's s), so predictions and probabilities match its test figures
        return {"classes": self.classes, "logit_adjustment": self.logit_adjustment, "logit_scale": self.logit_scale}

    def summary(self, model: nn.Module, test: BatchLoader, precision: str, state: FitState,
                data: PreparedData) -> dict:
        test_cm, test_loss = self.confusion(model, test, precision)
        report = classification_report(test_cm)
        best_row = state.history[state.best_epoch]
        summary = {
            "val_acc": best_row["val_acc"],
            "val_balanced_acc": best_row["val_balanced_acc"],
            "test_acc": report["acc"],
            "test_balanced_acc": report["balanced_acc"],
            "test_macro_f1": report["macro_f1"],
            "test_loss": test_loss,
            "per_class_acc": report["per_class_acc"],
            "confusion": report["confusion"],
            "best_test_acc_over_epochs": max(r["test_acc"] for r in state.history),
            "classes": self.classes,
            "train_class_counts": data.train_counts,
            "kept_class_counts": data.kept_counts,
        }
        # long-tail figures (MiSLAS / Kang et al.): calibration and accuracy by training class size
        # (the kept counts: the data set's own shape, before any oversampling)
        bins = calibration(model, test, precision, self.cfg.ece_bins, self.logit_adjustment, self.logit_scale)
        summary["test_ece"] = expected_calibration_error(bins)
        # the sums, not per-bin means: seeds of an arm add up bin by bin into one reliability diagram
        summary["test_calibration_bins"] = {"count": [int(n) for n in bins[0]], "confidence_sum": bins[1].tolist(),
                                            "correct": [int(n) for n in bins[2]]}
        summary["test_acc_by_class_size"] = accuracy_by_class_size(data.kept_counts, report["per_class_acc"])
        thirds = accuracy_by_thirds(data.kept_counts, report["per_class_acc"])
        if thirds is not None:
            summary["test_acc_by_thirds"] = thirds
        if self.transfer_log is not None:
            summary["transfer"] = self.transfer_log
        if self.pretrained_log is not None:
            summary["pretrained"] = self.pretrained_log
        if self.tau_search is not None:
            summary["posthoc_tau"] = self.tau_search
        return summary


def check_mix_settings(cfg: TrainConfig) -> None:
    """Refuse mixing parameters that the chosen --mix would ignore."""
    defaults = setting_defaults(TrainConfig)
    unused = {"none": ("mix_alpha", "remix_kappa", "remix_tau"), "mixup": ("remix_kappa", "remix_tau")}
    for name in unused.get(cfg.mix, ()):
        if getattr(cfg, name) != defaults[name]:
            needs = "--mix remix" if name.startswith("remix") else "--mix mixup or remix"
            raise LongtailError(f"--{name.replace('_', '-')} applies with {needs}, but --mix is {cfg.mix}")
