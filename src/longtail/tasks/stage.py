"""A second stage on a finished classifier run (Kang et al. 2020; the methods are in
:mod:`longtail.decoupling`): only the last layer changes. Batches, loss, metrics and summary are
the classifier's (this task is a :class:`~longtail.tasks.classify.ClassifyTask`).

The source is ``--init RUN/checkpoint.pt`` of a finished ``longtail train`` run. Its data (the same
kept training samples, compared by their hash) and network are kept; the model is rebuilt from
its checkpoint's architecture record and ends as one of that architecture, so ``load_model``,
``predict``, ``evaluate`` and ``export`` read the stage's run like any classifier run.
"""

from __future__ import annotations

import copy
import sys

import torch
from torch import nn

from longtail.config import TrainConfig
from longtail.data.loader import BatchLoader
from longtail.data.prepare import PreparedData
from longtail.decoupling import STAGES, check_same_settings, search_tau, source_folder
from longtail.distributed import DistContext
from longtail.engine import FitState
from longtail.errors import LongtailError
from longtail.inference.model import FinishedRun, open_run
from longtail.models import build_from_arch
from longtail.models.heads import classifier_layer
from longtail.runs import read_json
from longtail.tasks.classify import ClassifyTask


def open_source(cfg: TrainConfig) -> FinishedRun:
    """The finished classifier run ``--init`` names, refused in one line if it is not one."""
    return open_run(source_folder(cfg.init, cfg.stage), action=f"start --stage {cfg.stage} from")


class StageTask(ClassifyTask):
    @classmethod
    def check_settings(cls, cfg: TrainConfig) -> None:
        source = open_source(cfg)
        check_same_settings(cfg, source.config, source.path)
        if cfg.transfer != "finetune" or cfg.transfer_layers is not None or cfg.transfer_lr_scale != 1.0:
            raise LongtailError("--transfer, --transfer-layers and --transfer-lr-scale apply to --init without --stage; "
                                "a stage itself freezes everything but the last layer")
        super().check_settings(cfg)
        arch = source.checkpoint["arch"]
        with torch.device("meta"):
            net = build_from_arch(arch)
        name = classifier_layer(net, len(source.classes))
        STAGES.get_entry(cfg.stage).check(arch.get("head", "linear"), net.get_submodule(name), name)

    @classmethod
    def prepare(cls, cfg: TrainConfig, ds) -> PreparedData:
        folder = source_folder(cfg.init, cfg.stage)
        fingerprint = read_json(folder / "config.json").get("dataset_fingerprint")
        if ds.fingerprint != fingerprint:
            raise LongtailError(f"--stage {cfg.stage}: {folder} was trained on other data (fingerprint "
                                f"{str(fingerprint)[:16]}, --data {cfg.data} has {ds.fingerprint[:16]}); give its --data")
        data = super().prepare(cfg, ds)
        if data.kept_hash != read_json(folder / "summary.json").get("kept_indices_hash"):
            raise LongtailError(f"--stage {cfg.stage}: the training samples kept here differ from {folder}'s (their "
                                "hash); its data settings and this version must make the same imbalanced set")
        return data

    def __init__(self, cfg: TrainConfig, ds, data: PreparedData, device: torch.device, ctx: DistContext):
        super().__init__(cfg, ds, data, device, ctx)
        self.verbose = ctx.is_main and not cfg.quiet
        self.stage_log: dict = {}

    def starting_model(self, cfg: TrainConfig, ds, device: torch.device) -> nn.Module:
        source = open_source(cfg)
        self.source_path, self.source_summary = source.path, source.summary
        self.arch = source.checkpoint["arch"]
        model = build_from_arch(self.arch)
        try:
            model.load_state_dict(source.checkpoint["model"])
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0][:160]
            raise LongtailError(f"{cfg.init} does not fit its own architecture record ({first})") from None
        model = model.to(device).to(memory_format=torch.channels_last)
        self.layer = classifier_layer(model, ds.num_classes)
        self.stage = STAGES.get_entry(cfg.stage)
        self.trains = self.stage.trains
        self.fresh_output_layer = self.stage.reinitialises
        self.stage.prepare(model, self.layer, lambda: build_from_arch(self.arch).get_submodule(self.layer))
        self.trained = [n for n, p in model.named_parameters() if p.requires_grad]
        return model

    def start_epoch(self, epoch: int) -> None:
        super().start_epoch(epoch)
        # The trunk in eval mode: BatchNorm normalises with the source run's statistics and keeps
        # them (Kang et al.'s released code leaves it in train mode; the paper fixes the features).
        self.model.eval()
        self.model.get_submodule(self.layer).train()

    def search(self, model: nn.Module, val: BatchLoader, test: BatchLoader, precision: str) -> FitState:
        def score() -> tuple[float, dict]:
            figures = self.evaluate(model, val, precision)
            value = figures.pop("score")
            row = {f"val_{k}": v for k, v in figures.items() if not isinstance(v, list)}
            return value, {**row, **self.epoch_extras(model, test, precision)}

        best, rows = search_tau(model.get_submodule(self.layer), score)
        if self.verbose:
            for r in rows:
                print(f"tau {r['tau']:.1f}: val acc {r['val_acc']:.4f}, balanced {r['val_balanced_acc']:.4f}",
                      file=sys.stderr)
        return FitState(best_score=rows[best]["val_balanced_acc"], best_epoch=best,
                        best_model=copy.deepcopy(model.state_dict()), history=rows)

    def finish(self, model: nn.Module) -> None:
        self.stage_log = self.stage.finish(model, self.layer)

    def summary(self, model: nn.Module, test: BatchLoader, precision: str, state: FitState,
                data: PreparedData) -> dict:
        summary = super().summary(model, test, precision, state, data)
        summary["stage"] = {"method": self.cfg.stage, "source": str(self.source_path), "classifier_layer": self.layer,
                            "trained": self.trained, "source_test_acc": self.source_summary.get("test_acc"),
                            "source_test_balanced_acc": self.source_summary.get("test_balanced_acc"),
                            **self.stage_log}
        if not self.trains:
            summary.pop("best_test_acc_over_epochs")  # there were no epochs
            summary.update(epochs=0, best_epoch=None)
            summary["tau_norm"] = {"tau": state.history[state.best_epoch]["tau"], "selected_on": "val_balanced_acc",
                                   "bias": "dropped", "curve": state.history}
        return summary

    @staticmethod
    def headline(summary: dict) -> str:
        stage = summary["stage"]
        chosen = (f"tau {summary['tau_norm']['tau']:.1f}" if "tau_norm" in summary
                  else f"best epoch {summary['best_epoch']}")
        source = stage.get("source_test_balanced_acc")
        before = f"; the source run's balanced {source:.4f}" if isinstance(source, float) else ""
        return f"{stage['method']}: {ClassifyTask.test_figures(summary)} ({chosen} on validation{before})"
