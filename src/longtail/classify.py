"""The classification task for the training loop: batch -> loss, split -> metrics."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from longtail.data.loader import BatchLoader
from longtail.device import autocast
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
    def predict(self, model: nn.Module, loader: BatchLoader, precision: str) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(targets, predictions, mean plain cross-entropy) over the whole split."""
        was_training = model.training
        model.eval()
        targets, preds, loss_sum = [], [], 0.0
        for x, y in loader.epoch(0):
            with autocast(loader.device, precision):
                logits = model(x).float()
            # Validation loss is plain cross-entropy for every arm, so curves compare across losses.
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            if self.logit_adjustment is not None:
                logits = logits - self.logit_adjustment.to(logits.device)
            targets.append(y)
            preds.append(logits.argmax(dim=1))
        model.train(was_training)
        t, p = torch.cat(targets), torch.cat(preds)
        return t, p, loss_sum / max(t.numel(), 1)

    def evaluate(self, model: nn.Module, loader: BatchLoader, precision: str) -> dict:
        targets, preds, loss = self.predict(model, loader, precision)
        report = classification_report(confusion_matrix(targets, preds, self.num_classes))
        return {"loss": loss, **report, "score": report["balanced_acc"]}
