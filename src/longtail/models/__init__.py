"""The networks, and how a checkpoint's architecture record rebuilds one.

A checkpoint stores ``arch = {"name": NAME, **config}``; :func:`build_from_arch` turns that back
into an untrained module of the same shape (for resume, transfer, inference and the report).
"""

from __future__ import annotations

from torch import nn

from longtail.errors import LongtailError
from longtail.models.jigsaw_classify_net import JigsawClassifyNet, JigsawClassifyNetConfig
from longtail.models.jigsaw_net import JigsawNet, JigsawNetConfig
from longtail.models.seed_cnn import SeedCNN, SeedCNNConfig
from longtail.registry import Registry

# arch record name -> (module class, its config dataclass with from_dict/to_dict)
ARCHITECTURES: Registry[tuple[type[nn.Module], type]] = Registry("architecture", {
    "SeedCNN": (SeedCNN, SeedCNNConfig),
    "JigsawNet": (JigsawNet, JigsawNetConfig),
    "JigsawClassifyNet": (JigsawClassifyNet, JigsawClassifyNetConfig),
})


def arch_record(name: str, config) -> dict:
    """What a checkpoint stores to rebuild the model: its registry name and config."""
    return {"name": name, **config.to_dict()}


def build_from_arch(arch: dict) -> nn.Module:
    """An untrained module of the architecture a checkpoint records."""
    fields = dict(arch or {})
    module_cls, config_cls = ARCHITECTURES.get_entry(str(fields.pop("name", None)))
    try:
        return module_cls(config_cls.from_dict(fields))
    except (TypeError, ValueError, KeyError) as e:
        raise LongtailError(f"cannot rebuild a {arch.get('name')} from its checkpoint record ({e})") from None


__all__ = ["ARCHITECTURES", "JigsawNet", "JigsawNetConfig", "SeedCNN", "SeedCNNConfig", "arch_record",
           "build_from_arch"]
