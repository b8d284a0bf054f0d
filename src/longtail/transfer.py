"""``--init CHECKPOINT``: start a classifier from another run's weights.

Three kinds of source:

* a jigsaw pretraining checkpoint of the seed CNN's trunk (either head: ``sinkhorn`` or
  ``classify``), into the seed CNN, by an explicit layer map (the seed report's table 2): conv1,
  conv2, conv3 and fc1 (1024 -> 64) carry over (or a chosen subset of them); BatchNorm is not
  transferred (the jigsaw net normalizes un-pooled tile features, the classifier pooled image
  features) and neither is the last layer (puzzle scores vs classes); a jigsaw checkpoint of
  ResNet-32's trunk (JigsawResNet) into ResNet-32, by name and shape: every layer but the
  classifier's, which the jigsaw net does not have;
* a rotation pretraining checkpoint, into the same ``--model``: its net is a whole-image
  classifier with a 4-way head, so every tensor whose name and shape match is copied except that
  head's (rotations are not classes, even for a 4-class dataset);
* a classifier run's checkpoint, into any classifier: every tensor whose name and shape match is
  copied (weights and BatchNorm statistics alike), and the rest is listed -- typically the
  classifier layer of a run with another class count.

A source that shares no floating-point tensor with the model (another backbone: only BatchNorm's
step counters would match) is refused in one line. Either way a table of the model's top-level
layers goes to stderr and into summary.json ("transfer"). ``--transfer-layers`` picks top-level
layers to copy, ``--transfer freeze`` and ``--transfer-lr-scale`` act on the layers copied whole.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from longtail.errors import LongtailError
from longtail.models import SeedCNN, build_module
from longtail.models.heads import classifier_layer
from longtail.registry import Registry
from longtail.runs import load_checkpoint

# classifier layer <- jigsaw trunk layer
LAYER_MAP: Registry[str] = Registry("transfer layer", {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "fc1": "fc1"})
SOURCE_KINDS = ("jigsaw", "rotation", "classifier")
JIGSAW_ARCHS = ("JigsawNet", "JigsawClassifyNet")  # one trunk, two heads: the layer map fits both
NAMED_JIGSAW_ARCHS = ("JigsawResNet",)  # trunks with the classifier's own layer names: copied by name
SHOWN = 5  # tensors named per line of the printed "not copied" / "unused" lists


def init_from_checkpoint(model: nn.Module, checkpoint_path: str | Path, freeze: bool = False,
                         layers: list[str] | None = None, described: str = "model") -> dict:
    """Copy what fits of the checkpoint at ``checkpoint_path`` into ``model`` (``described`` names
    it in messages): a jigsaw trunk by the layer map, a rotation net or a classifier's weights by
    name and shape. Prints the table to stderr; returns it as a JSON-ready dict for the run's summary."""
    path = Path(checkpoint_path)
    ckpt = load_checkpoint(path)
    kind = check_source(ckpt, path, isinstance(model, SeedCNN), described)
    if uses_layer_map(ckpt):
        return _from_jigsaw(model, ckpt, path, freeze, layers)
    skip = pretext_head(ckpt, path) if kind == "rotation" else None
    return init_by_name(model, ckpt, path, freeze, layers, described, skip=skip)


def check_source(ckpt: dict, path: Path, into_seed_cnn: bool, described: str) -> str:
    """The checkpoint's kind, if it can initialise the model; else a one-line refusal."""
    kind = ckpt.get("kind")
    arch = (ckpt.get("arch") or {}).get("name")
    if kind not in SOURCE_KINDS or not isinstance(ckpt.get("model"), dict):
        described_ckpt = f"a {kind} checkpoint" if kind else "not a run's checkpoint"
        raise LongtailError(f"--init {path} is {described_ckpt}; give the checkpoint.pt of a `longtail pretrain` "
                            "run (jigsaw or rotation) or of a `longtail train` run")
    if kind == "jigsaw" and arch not in (*JIGSAW_ARCHS, *NAMED_JIGSAW_ARCHS):
        raise LongtailError(f"--init {path} is a jigsaw checkpoint of an unknown net ({arch})")
    if kind == "jigsaw" and arch in JIGSAW_ARCHS and not into_seed_cnn:
        raise LongtailError(f"--init {path} is a jigsaw checkpoint ({arch}); its trunk transfers into --model "
                            f"seed-cnn only (the layer map conv1..fc1), not into {described}")
    return kind


def uses_layer_map(ckpt: dict) -> bool:
    """A jigsaw checkpoint of the seed CNN's trunk, whose layers move by :data:`LAYER_MAP`."""
    return ckpt.get("kind") == "jigsaw" and (ckpt.get("arch") or {}).get("name") in JIGSAW_ARCHS


def pretext_head(ckpt: dict, path: Path) -> str:
    """The layer of a rotation checkpoint's net that scores rotations: the one part of it that is
    not a classifier's to take. Found as a classifier's is, on a net rebuilt without memory."""
    arch = ckpt.get("arch") or {}
    try:
        with torch.device("meta"):
            net = build_module(arch)
        return classifier_layer(net, int(arch["num_classes"]))
    except (TypeError, ValueError, KeyError, LongtailError):
        raise LongtailError(f"--init {path} is a rotation checkpoint of a net that cannot be rebuilt "
                            f"({arch.get('name', 'no architecture recorded')})") from None


def check_init(checkpoint_path: str | Path, into_seed_cnn: bool, layers: list[str] | None,
               described: str = "model") -> None:
    """What can be refused before data loads: the checkpoint is missing, unreadable, of the wrong
    kind, or ``layers`` names layers the jigsaw map does not have."""
    path = Path(checkpoint_path)
    ckpt = load_checkpoint(path)
    kind = check_source(ckpt, path, into_seed_cnn, described)
    if uses_layer_map(ckpt):
        transferred_layers(layers)
    elif kind == "rotation":
        pretext_head(ckpt, path)


# --- jigsaw trunk -> seed CNN, by the layer map -------------------------------------------------


def init_from_jigsaw(model: SeedCNN, checkpoint_path: str | Path, freeze: bool = False,
                     layers: list[str] | None = None) -> dict:
    """Copy the mapped layers of a jigsaw checkpoint into ``model`` (frozen if asked), print the
    layer map to stderr and return it as a JSON-ready dict for the run's summary.

    ``layers`` picks a subset of the map (default: all of it). The trunk's fc1 read a 4x4 map of
    one tile, the classifier's reads a 4x4 map of the whole image; the convs alone transferred
    better on CIFAR-10 (docs/results.md, "Transfer into the classifier")."""
    path = Path(checkpoint_path)
    ckpt = load_checkpoint(path)
    kind = ckpt.get("kind")
    arch = ckpt.get("arch") or {}
    if kind != "jigsaw" or arch.get("name") not in JIGSAW_ARCHS:
        described = (f"a {kind} checkpoint ({arch.get('name', 'unknown architecture')})" if kind
                     else "not a pretraining checkpoint")
        raise LongtailError(f"--init {path} is {described}; "
                            "give the checkpoint.pt of a `longtail pretrain --task jigsaw` run")
    return _from_jigsaw(model, ckpt, path, freeze, layers)


def _from_jigsaw(model: SeedCNN, ckpt: dict, path: Path, freeze: bool, layers: list[str] | None) -> dict:
    chosen = transferred_layers(layers)
    arch = ckpt.get("arch") or {}
    weights = ckpt["model"]
    pairs = []
    for dst in chosen:
        src = LAYER_MAP[dst]
        layer = getattr(model, dst)
        for param in ("weight", "bias"):
            key = f"{src}.{param}"
            if key not in weights:
                raise LongtailError(f"--init {path} has no {key}; it is not a complete jigsaw checkpoint")
            source, target = weights[key], getattr(layer, param)
            if source.shape != target.shape:
                raise LongtailError(
                    f"cannot transfer {src}.{param}: the jigsaw net has shape {list(source.shape)}, the classifier "
                    f"{list(target.shape)} (the trunk fits a classifier with padding 'same' on images twice the "
                    f"size of its {'x'.join(map(str, arch.get('tile_size', ['?'])[::-1]))} px tiles)")
            pairs.append((target, source))
    # Every shape is checked before anything is copied, so a refusal leaves the model as it was.
    with torch.no_grad():
        for target, source in pairs:
            target.copy_(source.to(target.device, target.dtype))
    rows = []
    for name, module in model.named_children():
        if name in chosen:
            if freeze:
                module.requires_grad_(False)
            status = "frozen" if freeze else "transferred"
            source = LAYER_MAP[name]
        else:
            status, source = "not transferred", None
        rows.append({"name": name, "shape": _weight_shape(module), "status": status, "from": source})
    _print_table(rows, "jigsaw")
    return {"checkpoint": str(path), "source_kind": "jigsaw", "freeze": freeze, "pretrain_grid": arch.get("grid"),
            "layers": rows}


def transferred_layers(layers: list[str] | None) -> list[str]:
    """The classifier layers a jigsaw transfer copies: ``layers`` checked against the map, in the
    map's order; None means the whole map."""
    if layers is None:
        return list(LAYER_MAP)
    unknown = [name for name in layers if name not in LAYER_MAP]
    if unknown or not layers:
        raise LongtailError(f"--transfer-layers must name some of {', '.join(LAYER_MAP)} (the jigsaw layer map), "
                            f"got {', '.join(layers) if layers else 'none'}")
    return [name for name in LAYER_MAP if name in layers]


# --- classifier -> classifier, by name and shape ------------------------------------------------


def init_by_name(model: nn.Module, ckpt: dict, path: Path, freeze: bool = False, layers: list[str] | None = None,
                 described: str = "model", skip: str | None = None) -> dict:
    """Copy every tensor of ``ckpt["model"]`` whose name and shape match one of ``model``'s (in the
    top-level layers ``layers``, default all), but none of the layer ``skip`` (a pretext task's
    head); list the rest. Refuses, leaving the model untouched, when no floating-point tensor
    matches. Layers copied whole are frozen if ``freeze``."""
    weights = ckpt["model"]
    source_arch = (ckpt.get("arch") or {}).get("name", "classifier")
    target = model.state_dict()
    names = top_level_layers(model)
    chosen = set(names) if layers is None else set(check_layer_names(names, layers, described))
    copied, not_copied = [], []
    for key, tensor in target.items():
        if key.split(".")[0] not in chosen:
            not_copied.append({"key": key, "reason": "not among --transfer-layers"})
        elif skip is not None and key.startswith(skip + "."):
            not_copied.append({"key": key, "reason": f"{skip} scores the pretext task, not classes"})
        elif key not in weights:
            not_copied.append({"key": key, "reason": "not in the checkpoint"})
        elif weights[key].shape != tensor.shape:
            not_copied.append({"key": key, "reason": f"shape {list(weights[key].shape)} in the checkpoint, "
                                                     f"{list(tensor.shape)} here"})
        else:
            copied.append(key)
    # BatchNorm's step counters (shape []) match between any two nets with a BatchNorm of the same
    # name; copying them alone would be a transfer in name only.
    if not any(weights[key].is_floating_point() for key in copied):
        raise LongtailError(f"--init {path} ({source_arch}) shares no layer with this run's {described}: no tensor "
                            "matches in name and shape" + (" among --transfer-layers" if layers is not None else ""))
    with torch.no_grad():
        for key in copied:
            target[key].copy_(weights[key].to(target[key].device, target[key].dtype))
    done = set(copied)
    rows = []
    for name, module in model.named_children():
        if name not in names:
            continue
        keys = [k for k in target if k.split(".")[0] == name]
        n_copied = sum(k in done for k in keys)
        if n_copied == len(keys):
            if freeze:
                module.requires_grad_(False)
            status = "frozen" if freeze else "transferred"
        else:
            status = "partly transferred" if n_copied else "not transferred"
        rows.append({"name": name, "shape": _weight_shape(module), "status": status,
                     "from": name if n_copied else None, "tensors": [n_copied, len(keys)]})
    unused = [k for k in weights if k not in target]
    _print_table(rows, source_arch)
    _print_keys("not copied", [f"{r['key']} ({r['reason']})" for r in not_copied])
    _print_keys("unused from the checkpoint", unused)
    return {"checkpoint": str(path), "source_kind": ckpt.get("kind"), "freeze": freeze, "source_arch": source_arch,
            **({"pretext_head": skip} if skip is not None else {}), "layers": rows,
            "tensors_copied": len(copied), "not_copied": not_copied, "unused": unused}


def top_level_layers(model: nn.Module) -> list[str]:
    """The model's top-level children that hold tensors (a ReLU or pooling child has nothing to copy)."""
    return [name for name, module in model.named_children() if next(iter(module.state_dict()), None) is not None]


def check_layer_names(names: list[str], layers: list[str], described: str = "model") -> list[str]:
    """``layers`` if every one is among ``names`` (the model's top-level layers)."""
    unknown = [name for name in layers if name not in names]
    if unknown or not layers:
        raise LongtailError(f"unknown transfer layer {unknown[0] if unknown else 'none'!r} of {described} "
                            f"(--transfer-layers); choose from {', '.join(names)}")
    return layers


def check_transfer_layers(model: str, layers: list[str]) -> list[str]:
    """``layers`` checked against the top-level layers of ``--model model``, built without memory
    (meta device), so a wrong name is refused when the settings are read."""
    from longtail.models import ModelRequest, build_from_arch, model_arch

    with torch.device("meta"):
        net = build_from_arch(model_arch(model, ModelRequest()))
    return check_layer_names(top_level_layers(net), layers, model)


# --- the printed table ---------------------------------------------------------------------------


def _weight_shape(module: nn.Module) -> list[int]:
    weight = getattr(module, "weight", None)
    return list(weight.shape) if isinstance(weight, torch.Tensor) else []


def _print_table(rows: list[dict], source: str) -> None:
    for row in rows:
        origin = f"<- {source} {row['from']}" if row["from"] else ""
        if "tensors" in row and row["status"] == "partly transferred":
            origin += f" ({row['tensors'][0]} of {row['tensors'][1]} tensors)"
        line = f"transfer: {row['name']:<6} {row['shape']!s:<18} {row['status']:<15} {origin}"
        print(line.rstrip(), file=sys.stderr)


def _print_keys(what: str, keys: list[str]) -> None:
    if keys:
        more = f" and {len(keys) - SHOWN} more (summary.json lists all)" if len(keys) > SHOWN else ""
        print(f"transfer: {what}: {', '.join(keys[:SHOWN])}{more}", file=sys.stderr)
