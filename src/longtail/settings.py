"""One source of truth per setting: its type, default, help, choices and bounds.

A setting is a dataclass field declared with :func:`setting`; everything else reads it: the
command-line flags and their ``--help`` (cli.py), the checks of TOML files and study tables
(:func:`check_mapping`), and the set of keys that do not change a run's numbers
(:func:`run_neutral_keys`, used by resume, studies and the report alike).

Choices that come from a registry are named as ``"module:ATTRIBUTE"`` and looked up only when a
value is checked or help is printed, so this module (and ``longtail --help``) needs no torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longtail.errors import LongtailError

_KEY = "longtail"


@dataclass(frozen=True)
class Setting:
    help: str
    # A tuple of names, or "module:ATTRIBUTE" naming a registry (any mapping of name -> entry).
    choices: tuple[str, ...] | str | None = None
    prefix_choice: bool = False  # only the part before the first ':' is a choice (e.g. "step:10")
    low: float | None = None
    low_open: bool = False  # value must be > low rather than >= low
    high: float | None = None
    high_open: bool = False
    neutral: bool = False  # may differ between a run and its resumption without changing its numbers
    metavar: str | None = None


def setting(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING,
            **spec: Any) -> Any:
    """A dataclass field carrying its :class:`Setting`."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={_KEY: Setting(help=help, **spec)})


def settings_of(cls: type) -> dict[str, Setting]:
    """name -> Setting for every field of a settings dataclass, in declaration order."""
    return {f.name: f.metadata[_KEY] for f in dataclasses.fields(cls) if _KEY in f.metadata}


def run_neutral_keys(cls: type) -> set[str]:
    """Settings that do not change what a run computes (where it runs, how it reports)."""
    return {name for name, s in settings_of(cls).items() if s.neutral}


def setting_defaults(cls: type) -> dict[str, Any]:
    """name -> default of every setting that has one (a factory's value for lists and dicts)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def choice_names(spec: Setting) -> list[str]:
    if spec.choices is None:
        return []
    if isinstance(spec.choices, tuple):
        return list(spec.choices)
    module, _, attr = spec.choices.partition(":")
    return list(getattr(importlib.import_module(module), attr))


def _choice_word(name: str, spec: Setting) -> str:
    """What a choice of this setting is called in messages ("loss", "rebalance method", ...)."""
    if isinstance(spec.choices, str):
        module, _, attr = spec.choices.partition(":")
        return getattr(getattr(importlib.import_module(module), attr), "what", name.replace("_", " "))
    return name.replace("_", " ")


# --- checking values ---------------------------------------------------------------------------


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


def _bounds_text(spec: Setting) -> str:
    parts = []
    if spec.low is not None:
        parts.append(f"{'>' if spec.low_open else '>='} {spec.low}")
    if spec.high is not None:
        parts.append(f"{'<' if spec.high_open else '<='} {spec.high}")
    return " and ".join(parts)


def check_value(name: str, value: Any, spec: Setting, annotation: Any, where: str) -> Any:
    """``value`` checked against the setting's type, choices and bounds; ints become floats where
    a float is expected. Errors name the key and where it came from."""
    key = name
    if isinstance(value, int) and not isinstance(value, bool) and _type_ok(float(value), annotation) \
            and not _type_ok(value, annotation):
        value = float(value)
    if not _type_ok(value, annotation):
        raise LongtailError(f"{key} in {where} must be {_type_name(annotation)}, got {value!r}")
    if value is None:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise LongtailError(f"{key} in {where} must be a finite number, got {value!r}")
    if spec.choices is not None:
        allowed = choice_names(spec)
        for item in (value if isinstance(value, list) else [value]):
            name_part = item.split(":", 1)[0] if spec.prefix_choice else item
            if name_part not in allowed:
                raise LongtailError(f"unknown {_choice_word(name, spec)} {name_part!r} ({key} in {where}); "
                                    f"choose from {', '.join(allowed)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low_bad = spec.low is not None and (value <= spec.low if spec.low_open else value < spec.low)
        high_bad = spec.high is not None and (value >= spec.high if spec.high_open else value > spec.high)
        if low_bad or high_bad:
            raise LongtailError(f"{key} in {where} must be {_bounds_text(spec)}, got {value!r}")
    return value


def check_mapping(cls: type, mapping: dict, where: str) -> dict:
    """Validate the keys and values of ``mapping`` against settings dataclass ``cls``; return it
    with '-' in keys turned into '_' and ints widened to floats where floats are expected."""
    hints = typing.get_type_hints(cls)
    specs = settings_of(cls)
    out = {}
    for key, value in mapping.items():
        name = key.replace("-", "_")
        if name not in specs:
            raise LongtailError(f"unknown key {key!r} in {where}")
        out[name] = check_value(name, value, specs[name], hints[name], where)
    return out


# --- merging sources ---------------------------------------------------------------------------


def load_toml(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise LongtailError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise LongtailError(f"config file {path} is a folder, not a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise LongtailError(f"{path} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise LongtailError(f"{path} is not valid TOML: it is not UTF-8 text") from None
    except OSError as e:
        raise LongtailError(f"cannot read config file {path}: {e.strerror}") from None


def merge(cls: type, recipes: dict[str, dict], *, cli: dict | None = None,
          toml_path: str | Path | None = None, base: dict | None = None) -> Any:
    """Build a ``cls`` from recipe defaults < ``base`` (e.g. a study table) < TOML file < CLI
    values (None = unset), every source checked key by key. The recipe named by the merged
    ``recipe`` key (or the field's default) fills the fields left unset."""
    return build(cls, recipes, given_values(cls, cli=cli, toml_path=toml_path, base=base))


def given_values(cls: type, *, cli: dict | None = None, toml_path: str | Path | None = None,
                 base: dict | None = None) -> dict:
    """The values the sources set, each checked: ``base`` < TOML file < CLI values (None = unset)."""
    merged: dict = {}
    if base:
        merged.update(check_mapping(cls, base, "the study file"))
    if toml_path is not None:
        merged.update(check_mapping(cls, load_toml(toml_path), str(toml_path)))
    if cli:
        merged.update(check_mapping(cls, {k: v for k, v in cli.items() if v is not None}, "the command line"))
    return merged


def build(cls: type, recipes: dict[str, dict], given: dict, default_recipe: str | None = None) -> Any:
    """A ``cls`` of the ``given`` values; the recipe they name (else ``default_recipe``, else the
    field's default) fills the fields left unset, and is recorded as the run's recipe."""
    recipe = (given.get("recipe") or default_recipe
              or next(f.default for f in dataclasses.fields(cls) if f.name == "recipe"))
    values = {**recipes[recipe], **{k: v for k, v in given.items() if v is not None}, "recipe": recipe}
    return cls(**values)


# --- help ----------------------------------------------------------------------------------------


def help_text(cls: type, name: str, recipes: dict[str, dict] | None = None) -> str:
    """A flag's full help: what it does, its choices and bounds, and its default (for a field
    the recipes fill, each recipe's value)."""
    spec = settings_of(cls)[name]
    text = spec.help
    names = choice_names(spec)
    if names:
        text += f"; choices: {', '.join(names)}"
    bounds = _bounds_text(spec)
    if bounds:
        text += f"; {bounds}"
    fld = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = fld.default_factory() if fld.default_factory is not dataclasses.MISSING else fld.default
    by_recipe = {r: values[name] for r, values in (recipes or {}).items() if name in values}
    if by_recipe:
        text += "; default from --recipe: " + ", ".join(f"{r} {_show(v)}" for r, v in by_recipe.items())
    elif default is not dataclasses.MISSING:
        text += f"; default: {_show(default)}"
    return text.replace("%", "%%")  # argparse formats help with %


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(empty)"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)
