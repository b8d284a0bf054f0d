"""Run settings as dataclasses, filled from recipe defaults, a TOML file and CLI flags.

Precedence, lowest first: the recipe's defaults, the TOML file, the command line. Unknown keys,
wrong types and out-of-range values are errors that name the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longtail.errors import LongtailError

CHOICES = {
    "optimizer": ("adam", "sgd"),
    "schedule": ("constant", "onecycle", "cosine"),
    "precision": ("auto", "bf16", "fp32"),
    "device": ("auto", "cpu", "cuda"),
    "padding": ("same", "valid"),
    "head": ("linear", "cosine"),
    "transfer": ("finetune", "freeze"),
}
POSITIVE = {"epochs", "batch_size", "lr", "transfer_lr_scale", "val_size", "limit_train", "limit_test", "threads", "checkpoint_every"}
NON_NEGATIVE = {"weight_decay", "label_smoothing", "momentum", "seed", "split_seed", "eval_every"}


@dataclass
class TrainConfig:
    """Everything that decides a classifier run. Fields left ``None`` come from the recipe."""

    data: str = "cifar10"
    out: str | None = None
    recipe: str = "fast"
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    schedule: str | None = None
    label_smoothing: float | None = None
    augment: list[str] | None = None
    precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    split_seed: int = 0
    val_size: int | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    padding: str = "same"
    head: str = "linear"
    imbalance: str | None = None
    rebalance: str = "none"
    loss: str = "ce"
    loss_params: dict = field(default_factory=dict)
    init: str | None = None
    transfer: str = "finetune"
    transfer_lr_scale: float = 1.0
    transfer_layers: list[str] | None = None
    threads: int | None = None
    sync_bn: bool = False
    checkpoint_every: int | None = None
    quiet: bool = False
    resume: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


RECIPES: dict[str, dict[str, Any]] = {
    # The seed report's setting (Homework 02).
    "seed": dict(epochs=20, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="constant",
                 label_smoothing=0.0, augment=[]),
    # Our best for the same CNN and epoch budget: see README, "Recipes". Batch 128, not 256: on the
    # 2-core dev CPU a 128-image step's activations stay in cache and the step runs ~1.5x more
    # images/s, and 20 epochs reached the same test accuracy (0.8225 vs 0.8175, seed 0).
    "fast": dict(epochs=20, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="onecycle",
                 label_smoothing=0.1, augment=["crop", "flip"]),
}


def load_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise LongtailError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise LongtailError(f"{path} is not valid TOML: {e}") from None
    except OSError as e:
        raise LongtailError(f"cannot read config file {path}: {e.strerror}") from None


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def check_mapping(cls: type, mapping: dict, where: str) -> dict:
    """Validate keys and value types of ``mapping`` against dataclass ``cls``; return it normalised."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in mapping.items():
        name = key.replace("-", "_")
        if name not in hints:
            raise LongtailError(f"unknown key {key!r} in {where}")
        if isinstance(value, int) and not isinstance(value, bool) and _type_ok(float(value), hints[name]) \
                and not _type_ok(value, hints[name]):
            value = float(value)
        if not _type_ok(value, hints[name]):
            raise LongtailError(f"{key} in {where} must be {_type_name(hints[name])}, got {value!r}")
        if name in CHOICES and value is not None and value not in CHOICES[name]:
            raise LongtailError(f"{key} in {where} must be one of {', '.join(CHOICES[name])}, got {value!r}")
        if name in POSITIVE and value is not None and value <= 0:
            raise LongtailError(f"{key} in {where} must be positive, got {value!r}")
        if name in NON_NEGATIVE and value is not None and value < 0:
            raise LongtailError(f"{key} in {where} must not be negative, got {value!r}")
        out[name] = value
    return out


def merge_config(cls: type, recipes: dict[str, dict], default_recipe: str, *, cli: dict | None = None,
                 toml_path: str | Path | None = None, base: dict | None = None, what: str = "recipe"):
    """Build a ``cls`` from recipe defaults < ``base`` (e.g. a study table) < TOML file < CLI values
    (None = unset), every source checked key by key."""
    merged: dict = {}
    if base:
        merged.update(check_mapping(cls, base, "the study file"))
    if toml_path is not None:
        merged.update(check_mapping(cls, load_toml(toml_path), str(toml_path)))
    if cli:
        merged.update(check_mapping(cls, {k: v for k, v in cli.items() if v is not None}, "the command line"))
    recipe = merged.get("recipe", default_recipe)
    if recipe not in recipes:
        raise LongtailError(f"unknown {what} {recipe!r}; choose from {', '.join(recipes)}")
    return cls(**{**recipes[recipe], **{k: v for k, v in merged.items() if v is not None}})


def resolve_train_config(cli: dict | None = None, toml_path: str | Path | None = None,
                         base: dict | None = None) -> TrainConfig:
    """Merge recipe defaults < ``base`` (e.g. a study arm) < TOML file < CLI values (None = unset)."""
    cfg = merge_config(TrainConfig, RECIPES, "fast", cli=cli, toml_path=toml_path, base=base)
    if cfg.label_smoothing >= 1:
        raise LongtailError(f"label_smoothing must be below 1, got {cfg.label_smoothing}")
    if cfg.transfer_layers is not None:
        from longtail.transfer import transferred_layers  # torch and the models: only when asked

        transferred_layers(cfg.transfer_layers)
    return cfg
