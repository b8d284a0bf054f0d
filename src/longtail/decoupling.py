"""Decoupled classifier learning (Kang et al. 2020, "Decoupling representation and classifier for
long-tailed recognition", ICLR): a second stage that changes only the last layer of a finished
classifier run; the representation (every other weight, and BatchNorm's running statistics) stays
as the source run left it.

- ``crt`` (classifier re-training): the last layer re-initialised as a new model of the same
  architecture initialises it, and trained again with class-balanced sampling.
- ``lws`` (learnable weight scaling): the last layer's weights fixed, a scale f_j per class learned
  from 1, logits_j = f_j (w_j . x + b_j) (their ``models/TauNormClassifier.py`` multiplies the
  biased logits). Saved folded into the layer, (f_j w_j, f_j b_j), so the checkpoint is an ordinary
  model of the source's architecture.
- ``tau-norm``: no training; w_j <- w_j / ||w_j||^tau and the bias dropped (their ``tau_norm.py``
  scores x . w_j without it), tau chosen on the validation split from 0, 0.1, ..., 2 (their grid,
  ``np.linspace(0, 2, 21)``) by balanced accuracy, the score every classifier run selects by.

Each is a :class:`Stage` in :data:`STAGES`; ``longtail.tasks.stage`` runs them in the one lifecycle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from longtail.config import STAGE_KEEPS, TrainConfig, default_head
from longtail.errors import LongtailError
from longtail.registry import Registry
from longtail.runs import read_json
from longtail.settings import check_mapping

TAU_GRID = tuple(round(0.1 * k, 1) for k in range(21))  # 0, 0.1, ..., 2.0


class Stage:
    """One decoupled method: what it refuses, how it turns the source run's model into the one it
    trains, and how that becomes an ordinary model again."""

    trains = True  # False: nothing is trained; the task chooses among candidate weights instead
    reinitialises = False  # the last layer starts fresh (so a loss's initial output bias applies)

    def check(self, head: str, layer: nn.Module, name: str) -> None:
        """Refuse (one line) a classifier layer the method cannot work on."""

    def prepare(self, model: nn.Module, name: str, new_layer: Callable[[], nn.Module]) -> None:
        """Make ``model`` (the source run's weights) what the stage trains; ``name`` is its
        classifier layer, ``new_layer()`` a freshly initialised one of the same architecture."""
        model.requires_grad_(False)

    def finish(self, model: nn.Module, name: str) -> dict:
        """Turn the trained model back into the source's architecture, in place; returns what the
        summary records about it."""
        return {}


class ClassifierRetraining(Stage):
    reinitialises = True

    def prepare(self, model: nn.Module, name: str, new_layer: Callable[[], nn.Module]) -> None:
        super().prepare(model, name, new_layer)
        layer = model.get_submodule(name)
        with torch.no_grad():  # copied, not swapped: the layer keeps its device and memory format
            layer.load_state_dict(new_layer().state_dict())
        layer.requires_grad_(True)


def _linear_only(method: str, head: str, layer: nn.Module, name: str) -> None:
    if head == "cosine":
        # A cosine head normalises every class vector before it scores: norms (tau-norm) and scales
        # folded into the weights (LWS) are divided out again.
        raise LongtailError(f"--stage {method} rescales the class weights, which the source run's cosine head "
                            "normalises away; use --stage crt, or a source run with --head linear")
    if type(layer) is not nn.Linear:
        raise LongtailError(f"--stage {method} needs a Linear last layer; this network scores classes with a "
                            f"{type(layer).__name__} ({name}); use --stage crt")


class ScaledLinear(nn.Module):
    """A fixed linear layer's logits times a learned scale per class (LWS)."""

    def __init__(self, layer: nn.Linear):
        super().__init__()
        self.layer = layer
        self.scale = nn.Parameter(torch.ones(layer.out_features, device=layer.weight.device,
                                             dtype=layer.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) * self.scale

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # The final checkpoint holds the layer folded (prefix.weight, prefix.bias): scales of 1 on
        # those weights. A run resumed after that save but before its summary reads it so.
        if prefix + "scale" not in state_dict and prefix + "weight" in state_dict:
            for name in ("weight", "bias"):
                if prefix + name in state_dict:
                    state_dict[f"{prefix}layer.{name}"] = state_dict.pop(prefix + name)
            state_dict[prefix + "scale"] = torch.ones_like(self.scale)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def folded(self) -> nn.Linear:
        """The inner layer with the scales multiplied into its rows: the same logits, one Linear."""
        self.layer.weight.mul_(self.scale[:, None])
        if self.layer.bias is not None:
            self.layer.bias.mul_(self.scale)
        return self.layer


class WeightScaling(Stage):
    def check(self, head: str, layer: nn.Module, name: str) -> None:
        _linear_only("lws", head, layer, name)

    def prepare(self, model: nn.Module, name: str, new_layer: Callable[[], nn.Module]) -> None:
        super().prepare(model, name, new_layer)
        model.set_submodule(name, ScaledLinear(model.get_submodule(name)))

    def finish(self, model: nn.Module, name: str) -> dict:
        scaled = model.get_submodule(name)
        scales = scaled.scale.detach().float().cpu().tolist()
        model.set_submodule(name, scaled.folded())
        return {"scales": scales}


def tau_normalized(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """w_j / ||w_j||^tau for every class row j of ``weight`` (a row of zeros stays zeros)."""
    norms = weight.detach().flatten(1).norm(dim=1)
    divisor = torch.where(norms > 0, norms.pow(tau), torch.ones_like(norms))
    return weight / divisor.view(-1, *[1] * (weight.dim() - 1))


@torch.no_grad()
def set_tau(layer: nn.Linear, weight: torch.Tensor, tau: float) -> None:
    """Give ``layer`` the tau-normalised rows of ``weight`` and no bias (zeros), as Kang et al. score."""
    layer.weight.copy_(tau_normalized(weight, tau))
    if layer.bias is not None:
        layer.bias.zero_()


def search_tau(layer: nn.Linear, score: Callable[[], tuple[float, dict]],
               grid: tuple[float, ...] = TAU_GRID) -> tuple[int, list[dict]]:
    """Try every tau of ``grid`` on ``layer``; ``score()`` returns (what selection maximises, the
    figures to record) for the layer as it is. Returns the chosen position in ``grid`` (ties: the
    smaller tau) and one row per tau; the layer is left at the chosen tau."""
    weight = layer.weight.detach().clone()
    rows, best, best_score = [], 0, -math.inf
    for i, tau in enumerate(grid):
        set_tau(layer, weight, tau)
        value, figures = score()
        rows.append({"tau": tau, **figures})
        if value > best_score:
            best, best_score = i, value
    set_tau(layer, weight, grid[best])
    return best, rows


class TauNormalization(Stage):
    trains = False

    def check(self, head: str, layer: nn.Module, name: str) -> None:
        _linear_only("tau-norm", head, layer, name)


# "none": an ordinary classifier run (tasks.classify); the others run as tasks.stage.
STAGES: Registry[Stage | None] = Registry("classifier stage", {
    "none": None,
    "crt": ClassifierRetraining(),
    "lws": WeightScaling(),
    "tau-norm": TauNormalization(),
})


# --- the run a stage starts from -----------------------------------------------------------------


def source_folder(init: str | None, stage: str) -> Path:
    """The run folder of ``--init RUN/checkpoint.pt``."""
    if not init:
        raise LongtailError(f"--stage {stage} needs --init RUN/checkpoint.pt, the finished classifier run whose last "
                            "layer it changes")
    path = Path(init)
    if path.name != "checkpoint.pt":
        raise LongtailError(f"--stage {stage} starts from a finished run: give its RUN/checkpoint.pt, not {path}")
    return path.parent


def inherited_settings(init: str | None, stage: str) -> dict:
    """The source run's values of the settings a stage keeps (config.STAGE_KEEPS), from its
    config.json; nothing when it has none (the stage task refuses such a source in one line)."""
    config_path = source_folder(init, stage) / "config.json"
    if not config_path.is_file():
        return {}
    config = read_json(config_path)
    if not isinstance(config, dict):
        return {}
    kept = {k: config[k] for k in STAGE_KEEPS if config.get(k) is not None}
    return check_mapping(TrainConfig, kept, str(config_path))


def _as_json(value):
    return json.loads(json.dumps(value))


def check_same_settings(cfg: TrainConfig, source_config: dict, folder: Path) -> None:
    """Refuse a stage whose data or network settings differ from its source run's. The paths
    (data, root) may differ: the data's fingerprint is compared once they are loaded."""
    for key in STAGE_KEEPS:
        if key in ("data", "root"):
            continue
        value = (cfg.head or default_head(cfg.loss)) if key == "head" else getattr(cfg, key)
        mine, theirs = _as_json(value), source_config.get(key)
        if mine != theirs:
            raise LongtailError(f"--stage {cfg.stage} keeps the data and network of {folder}, made with "
                                f"{key}={theirs!r}; this run has {key}={mine!r} (leave it unset to take the source's)")
