"""A study's pretrainings: the ``[pretrain]`` tables, which training images each one takes, and
which arms start from which (docs/imbalance.md, "Studies").

Two forms, never mixed in one file::

    [pretrain]                  # one pretraining, named "pretrain" (OUT/pretrain/seed-<n>/)
    epochs = 10
    [[arms]]
    init = "pretrain"

    [pretrain.rotation-lt]      # named ones (OUT/pretrain/<name>/seed-<n>/)
    task = "rotation"
    data_from = "ce"            # the images arm "ce" trains on (same kept indices), labels unused
    [pretrain.rotation-all]
    task = "rotation"
    data_from = "all"           # the whole training split, unlabeled
    [[arms]]
    init = "pretrain:rotation-lt"

``data_from`` copies the settings that decide a run's training images (the split, the dataset's
load options, and for an arm also its limit_train and imbalance profile) so that a pretraining
on "exactly the imbalanced training set" keeps the same images as the arm: the imbalance draw
follows the run's seed, which a study gives the pretraining and its arms alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longtail.config import PretrainConfig, TrainConfig
from longtail.errors import LongtailError
from longtail.settings import check_mapping, setting_defaults

UNNAMED = "pretrain"  # the name of the one pretraining of a plain [pretrain] table
ALL = "all"  # data_from: every training image but the validation hold-out
# Settings that decide which images a run trains on: where the validation hold-out is and what the
# dataset is (from [defaults]; "all" takes these) ...
SPLIT_KEYS = ("val_size", "split_seed", "image_size", "resize", "test_fraction", "root")
# ... and, from an arm, which of the rest it keeps.
ARM_KEYS = (*SPLIT_KEYS, "limit_train", "imbalance")
SEED_FOLDER = re.compile(r"^seed-\d+$")


@dataclass
class Pretraining:
    name: str
    table: dict  # PretrainConfig keys, checked; without data_from
    data_from: str | None  # an arm, ALL, or None: the table's own settings decide (the old form)
    data: dict  # the settings data_from brings (empty without it)

    @property
    def key(self) -> str:
        """What an arm's ``init`` says to start from this pretraining's checkpoint."""
        return UNNAMED if self.name == UNNAMED else f"{UNNAMED}:{self.name}"

    def folder(self, out: Path, seed: int) -> Path:
        """OUT/pretrain/seed-<n> for the unnamed one (as before names existed, so old studies
        resume), OUT/pretrain/<name>/seed-<n> for a named one."""
        base = out / "pretrain"
        return (base if self.name == UNNAMED else base / self.name) / f"seed-{seed}"

    def settings(self) -> dict:
        """The PretrainConfig values of every cell of this pretraining, before the cell's own."""
        return {**self.data, **self.table}

    def record(self) -> dict:
        return {"data_from": self.data_from, **self.table}


def parse_pretrainings(raw: Any, path: str, defaults: dict, arms: list[tuple[str, dict]],
                       cell_keys: dict[str, str], name_check) -> dict[str, Pretraining]:
    """The file's pretrainings by :attr:`Pretraining.key`, every table checked."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LongtailError(f"[pretrain] in {path} must be a table")
    named = {k: v for k, v in raw.items() if isinstance(v, dict)}
    if named and len(named) < len(raw):
        key = next(k for k in raw if k not in named)
        raise LongtailError(f"[pretrain] in {path} holds both keys ({key!r}) and named tables ([pretrain.NAME]); "
                            "give every pretraining its own [pretrain.NAME] table")
    tables = named if named else {UNNAMED: raw}
    out = {}
    for name, table in tables.items():
        where = "[pretrain]" if not named else f"[pretrain.{name}]"
        name_check(name, f"the name of {where} in {path}")
        if SEED_FOLDER.match(name):
            raise LongtailError(f"{where} in {path}: a pretraining may not be named like a seed folder")
        p = _parse_one(name, dict(table), f"{where} of {path}", defaults, arms, cell_keys)
        out[p.key] = p
    return out


def _parse_one(name: str, table: dict, where: str, defaults: dict, arms: list[tuple[str, dict]],
               cell_keys: dict[str, str]) -> Pretraining:
    data_from = table.pop("data_from", None)
    for key in table:
        if key.replace("-", "_") in cell_keys:
            raise LongtailError(f"key {key!r} in {where} is set by the study ({cell_keys[key.replace('-', '_')]})")
    table = check_mapping(PretrainConfig, table, where)
    if data_from is None:
        return Pretraining(name, table, None, {})
    arm_settings = {a: {**defaults, **overrides} for a, overrides in arms}
    if data_from != ALL and data_from not in arm_settings:
        raise LongtailError(f"data_from = {data_from!r} in {where} is not one of its arms "
                            f"({', '.join(arm_settings)}) or \"{ALL}\"")
    keys = SPLIT_KEYS if data_from == ALL else ARM_KEYS
    clash = [k for k in table if k in keys or k == "data"]
    if clash:
        raise LongtailError(f"key {clash[0]!r} in {where}: data_from = {data_from!r} decides the pretraining's "
                            "images; drop the key or drop data_from")
    source = defaults if data_from == ALL else arm_settings[data_from]
    return Pretraining(name, table, data_from, {k: source[k] for k in keys if k in source})


def check_arm_inits(pretrainings: dict[str, Pretraining], defaults: dict, arms: list[tuple[str, dict]],
                    path: str) -> None:
    """Every ``init = "pretrain[:NAME]"`` names a pretraining of the file whose net can start the
    arm's model -- refused here, before hours of runs, rather than when the arm starts."""
    pretrain_defaults, train_defaults = setting_defaults(PretrainConfig), setting_defaults(TrainConfig)
    for arm, overrides in arms:
        values = {**defaults, **overrides}
        init = values.get("init")
        if not is_pretraining_ref(init):
            continue
        where = f"arm {arm!r} of {path}"
        if init not in pretrainings:
            have = f" (its pretrainings: {', '.join(pretrainings)})" if pretrainings else ""
            table = "[pretrain]" if init == UNNAMED else f"[pretrain.{init.partition(':')[2]}]"
            raise LongtailError(f"{where} has init = \"{init}\" but the file has no {table} table{have}")
        p = pretrainings[init]
        settings = {**pretrain_defaults, **p.settings()}
        # every pretext net's trunk has the layers of the model it was pretrained as, and only those
        model = values.get("model", train_defaults["model"])
        if model != settings["model"]:
            raise LongtailError(f"{where} trains {model} from {init}, a {settings['task']} net of "
                                f"{settings['model']}: they share no layer (set model = \"{model}\" in the "
                                "pretraining)")


def is_pretraining_ref(init: Any) -> bool:
    """``init = "pretrain"`` or ``"pretrain:NAME"``: a checkpoint of the study's own, not a path."""
    return isinstance(init, str) and (init == UNNAMED or init.startswith(UNNAMED + ":"))
