"""The interface between a task and the lifecycle (``longtail.run``) and loop (``longtail.engine``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from longtail.data.loader import BatchLoader
from longtail.data.prepare import PreparedData, prepare_data
from longtail.distributed import DistContext
from longtail.engine import FitState
from longtail.models.seed_cnn import count_parameters


class RunTask(ABC):
    """One task of a run: its model, how a batch becomes a loss, how a split is scored, and what
    its summary and checkpoint add to the common ones. Built after the data, under the run's
    seed, so model initialisation draws from the same stream whatever the task."""

    kind: str = ""  # recorded in the checkpoint; --resume refuses a checkpoint of another kind
    # Under torchrun: evaluation split over the ranks and summed (True), or every rank scores the
    # whole split with the same weights (False).
    shard_eval: bool = True
    # False: nothing is trained; ``search`` chooses among candidate weights on validation instead
    # of ``engine.fit`` (tau-normalisation).
    trains: bool = True

    model: nn.Module
    arch: dict  # the architecture record stored with the checkpoint

    @classmethod
    def check_settings(cls, cfg: Any) -> None:
        """Refuse settings that cannot work, before any data loads."""

    @classmethod
    def prepare(cls, cfg: Any, ds) -> PreparedData:
        """The run's splits (the classifier's own split, so a pretrained trunk never sees the
        images a transferred classifier is selected or tested on)."""
        return prepare_data(cfg, ds)

    @abstractmethod
    def __init__(self, cfg: Any, ds, data: PreparedData, device: torch.device, ctx: DistContext):
        """Build ``self.model`` (on ``device``) and ``self.arch`` for the data ``ds``."""

    def slow_layers(self) -> tuple[set[str], float]:
        """Child modules trained at a fraction of the learning rate (transferred layers), and
        that fraction."""
        return set(), 1.0

    # --- the loop's side (engine.Task) ---
    def start_epoch(self, epoch: int) -> None:
        pass

    @abstractmethod
    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_seed: tuple) -> torch.Tensor:
        """The loss of one batch; random draws come from ``step_seed`` = (seed, epoch, step)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, loader: BatchLoader, precision: str) -> dict:
        """Figures of a split; "score" is what model selection maximises."""

    def epoch_extras(self, model: nn.Module, test: BatchLoader, precision: str) -> dict:
        """Figures added to every epoch's metrics row (the seed's per-epoch test accuracy)."""
        return {}

    def search(self, model: nn.Module, val: BatchLoader, test: BatchLoader, precision: str) -> FitState:
        """A task that trains nothing: the chosen candidate's weights as ``best_model``, one
        history row per candidate (what its summary records; there are no epochs)."""
        raise NotImplementedError(f"{type(self).__name__} trains; it has no search")

    def finish(self, model: nn.Module) -> None:
        """Turn the model holding the selected weights into the one tested and saved, in place
        (a classifier stage folds what it trained back into the network's own layers)."""

    def tune_on_validation(self, model: nn.Module, val: BatchLoader, precision: str) -> None:
        """Choices made after training, on the validation split with the selected weights loaded
        (post-hoc logit adjustment's tau); they hold for the test figures and the final checkpoint."""

    # --- the run's record ---
    def checkpoint_extras(self) -> dict:
        return {}

    @abstractmethod
    def summary(self, model: nn.Module, test: BatchLoader, precision: str, state: FitState,
                data: PreparedData) -> dict:
        """The task's part of summary.json, computed with the selected weights loaded."""

    @staticmethod
    def epoch_figures(row: dict) -> list[tuple[str, float]]:
        """The validation figures the per-epoch line shows."""
        return [("val score", row["val_score"])] if "val_score" in row else []

    @staticmethod
    def result_table(summary: dict) -> list[str]:
        """Lines printed after the headline when a run finishes (e.g. a per-class table)."""
        return []

    @staticmethod
    def headline(summary: dict) -> str:
        """The one line the CLI prints when the run has finished."""
        return f"best epoch {summary['best_epoch']} on validation"

    def pretext_summary(self, model: nn.Module, test: BatchLoader, precision: str, state: FitState) -> dict:
        """A pretext task's summary: the validation figures of the selected epoch, the test
        figures, and (the seed report's way) the best of each validation figure over epochs."""
        test_figures = self.evaluate(model, test, precision)
        test_figures.pop("score")
        best_row = state.history[state.best_epoch]
        return {
            **{k: v for k, v in best_row.items() if k.startswith("val_")},
            **{f"test_{k}": v for k, v in test_figures.items()},
            "best_over_epochs": {k: (min if k == "val_loss" else max)(r[k] for r in state.history)
                                 for k in best_row if k.startswith("val_")},
            "arch": self.arch,
        }

    def n_params(self) -> int:
        return count_parameters(self.model)
