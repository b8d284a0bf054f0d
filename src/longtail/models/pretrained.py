"""``--pretrained FILE``: a state_dict the user has (torchvision's ImageNet weights, a model saved
with ``torch.save(model.state_dict())``, a longtail or LDAM-DRW checkpoint) loaded into the backbone.

The file must fit the network exactly -- same names, same shapes -- except the classifier layer,
which is skipped (left at its random init) when it does not fit (another class count, another
head). Anything else is refused before a weight is copied, naming the first mismatched keys: a
file that half-fits is almost always the wrong file.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from longtail.errors import LongtailError
from longtail.models.heads import classifier_layer

SHOWN = 3  # mismatched keys named in the refusal, per kind of mismatch


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The name -> tensor mapping in ``path``, loaded with ``weights_only=True`` (no code runs).
    Accepts a bare state_dict, or a checkpoint dict holding one under "model" (longtail) or
    "state_dict" (LDAM-DRW, Lightning); a "module." prefix (DataParallel) is dropped."""
    path = Path(path)
    if not path.is_file():
        raise LongtailError(f"--pretrained file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever fails to unpickle safely is not a weights file
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise LongtailError(f"--pretrained {path} is not a loadable weights file ({first})") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LongtailError(f"--pretrained {path} holds no state_dict (a mapping of layer names to tensors)")
    weights = {str(k): v for k, v in obj.items()}
    if all(k.startswith("module.") for k in weights):
        weights = {k[len("module."):]: v for k, v in weights.items()}
    return weights


def _named(keys: list[str], what: str) -> str:
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return f"{what} {', '.join(keys[:SHOWN])}{more}"


def load_pretrained(model: nn.Module, path: str | Path, num_classes: int, described: str) -> dict:
    """Copy the state_dict in ``path`` into ``model`` (``described`` names it in messages), the
    classifier layer only if it fits; print one line to stderr and return a JSON-ready record."""
    weights = read_state_dict(path)
    target = model.state_dict()
    head = classifier_layer(model, num_classes)

    def in_head(key: str) -> bool:
        return key.startswith(head + ".")

    # BatchNorm's num_batches_tracked is absent from older files (torchvision's ImageNet weights);
    # it only counts steps, and BatchNorm's own loading fills it in the same way.
    missing = [k for k in target if not in_head(k) and k not in weights and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in weights if not in_head(k) and k not in target]
    misshapen = [f"{k} {list(weights[k].shape)} vs {list(target[k].shape)}" for k in target
                 if not in_head(k) and k in weights and weights[k].shape != target[k].shape]
    if missing or unexpected or misshapen:
        problems = [_named(keys, what) for keys, what in ((missing, "missing"), (unexpected, "unexpected"),
                                                          (misshapen, "shape (file vs model)")) if keys]
        raise LongtailError(f"--pretrained {path} does not fit {described}: {'; '.join(problems)}")

    head_target = {k: v for k, v in target.items() if in_head(k)}
    head_source = {k: v for k, v in weights.items() if in_head(k)}
    head_fits = head_source.keys() == head_target.keys() and all(
        head_source[k].shape == v.shape for k, v in head_target.items())
    loaded = [k for k in target if k in weights and (head_fits or not in_head(k))]
    with torch.no_grad():
        for key in loaded:
            target[key].copy_(weights[key].to(target[key].device, target[key].dtype))
    if head_fits:
        head_note = f"classifier {head} loaded"
    else:
        file_shapes = {k: list(v.shape) for k, v in head_source.items()} or "none"
        model_shapes = {k: list(v.shape) for k, v in head_target.items()}
        head_note = f"classifier {head} skipped (file {file_shapes}, model {model_shapes})"
    print(f"pretrained: {len(loaded)} tensors from {path}; {head_note}", file=sys.stderr)
    return {"file": str(path), "tensors_loaded": len(loaded), "classifier": head,
            "classifier_loaded": head_fits}
