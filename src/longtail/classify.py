"""The classification task for the training loop: batch -> loss, split -> metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from longtail.data.loader import BatchLoader
from longtail.device import autocast
from longtail.distributed import all_reduce_sum
from longtail.metrics import classification_report, confusion_matrix


class ClassificationTask:
    def __init__(self, loss_fn: nn.Module, num_classes: int, logit_adjustment: torch.Tensor | None = None):
        self.loss_fn = loss_fn
        self.num_classes = num_classes
        # Post-hoc logit adjustment (Menon et al. 2021) subtracts tau*log(prior) at prediction time.
        self.logit_adjustment = logit_adjustment

    def start_epoch(self, epoch: int) -> None:
        if hasattr(self.loss_fn, "set_epoch"):
            self.loss_fn.set_epoch(epoch)

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_seed: tuple) -> torch.Tensor:
        return self.loss_fn(model(x).float(), y)

    @torch.no_grad()
    def confusion(self, model: nn.Module, loader: BatchLoader, precision: str) -> tuple[torch.Tensor, float]:
        """(confusion matrix, mean plain cross-entropy) over the whole split.

        Under torchrun each rank sees a share of the split; the matrices and loss sums are added
        across ranks, so the figures are those of the whole split, not averages of averages.
        """
        was_training = model.training
        model.eval()
        cm = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)
        loss_sum = torch.zeros((), dtype=torch.float64)
        for x, y in loader.epoch(0):
            with autocast(loader.device, precision):
                logits = model(x).float()
            # Validation loss is plain cross-entropy for every arm, so curves compare across losses.
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double().cpu()
            if self.logit_adjustment is not None:
                logits = logits - self.logit_adjustment.to(logits.device)
            cm += confusion_matrix(y, logits.argmax(dim=1), self.num_classes)
        model.train(was_training)
        cm = all_reduce_sum(cm)
        total = float(all_reduce_sum(loss_sum))
        return cm, total / max(int(cm.sum()), 1)

    def evaluate(self, model: nn.Module, loader: BatchLoader, precision: str) -> dict:
        cm, loss = self.confusion(model, loader, precision)
        report = classification_report(cm)
        return {"loss": loss, **report, "score": report["balanced_acc"]}
