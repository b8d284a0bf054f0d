"""Jigsaw trunk -> classifier weights, by an explicit layer map (the seed report's table 2).

conv1, conv2, conv3 and fc1 (1024 -> 64) carry over (or a chosen subset of them); BatchNorm is
not transferred (the jigsaw net normalizes un-pooled tile features, the classifier pooled image
features) and neither is the last layer (puzzle scores vs classes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from longtail.errors import LongtailError
from longtail.registry import Registry
from longtail.models.seed_cnn import SeedCNN
from longtail.runs import load_checkpoint

# classifier layer <- jigsaw trunk layer
LAYER_MAP: Registry[str] = Registry("transfer layer", {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "fc1": "fc1"})


def init_from_jigsaw(model: SeedCNN, checkpoint_path: str | Path, freeze: bool = False,
                     layers: list[str] | None = None) -> dict:
    """Copy the mapped layers of a jigsaw checkpoint into ``model`` (frozen if asked), print the
    layer map to stderr and return it as a JSON-ready dict for the run's summary.

    ``layers`` picks a subset of the map (default: all of it). The trunk's fc1 read a 4x4 map of
    one tile, the classifier's reads a 4x4 map of the whole image; the convs alone transferred
    better on CIFAR-10 (docs/results.md, "Transfer into the classifier")."""
    path = Path(checkpoint_path)
    chosen = transferred_layers(layers)
    ckpt = load_checkpoint(path)
    kind = ckpt.get("kind")
    arch = ckpt.get("arch") or {}
    if kind != "jigsaw" or arch.get("name") != "JigsawNet":
        described = (f"a {kind} checkpoint ({arch.get('name', 'unknown architecture')})" if kind
                     else "not a pretraining checkpoint")
        raise LongtailError(f"--init {path} is {described}; "
                            "give the checkpoint.pt of a `longtail pretrain --task jigsaw` run")
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
        shape = list(module.weight.shape) if hasattr(module, "weight") else []
        if name in chosen:
            if freeze:
                module.requires_grad_(False)
            status = "frozen" if freeze else "transferred"
            source = LAYER_MAP[name]
        else:
            status, source = "not transferred", None
        rows.append({"name": name, "shape": shape, "status": status, "from": source})
    for row in rows:
        origin = f"<- jigsaw {row['from']}" if row["from"] else ""
        line = f"transfer: {row['name']:<6} {str(row['shape']):<18} {row['status']:<15} {origin}"
        print(line.rstrip(), file=sys.stderr)
    return {"checkpoint": str(path), "freeze": freeze, "pretrain_grid": arch.get("grid"), "layers": rows}


def transferred_layers(layers: list[str] | None) -> list[str]:
    """The classifier layers a transfer copies: ``layers`` checked against the map, in the map's
    order; None means the whole map."""
    if layers is None:
        return list(LAYER_MAP)
    unknown = [name for name in layers if name not in LAYER_MAP]
    if unknown or not layers:
        raise LongtailError(f"--transfer-layers must name some of {', '.join(LAYER_MAP)}, got "
                            f"{', '.join(layers) if layers else 'none'}")
    return [name for name in LAYER_MAP if name in layers]
