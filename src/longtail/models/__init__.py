"""The networks, which one ``--model`` names, and how a checkpoint's architecture record rebuilds one.

A checkpoint stores ``arch = {"name": NAME, **config}``; :func:`build_from_arch` turns that back
into an untrained module of the same shape (for resume, transfer, inference and the report).
A classifier run builds its model the same way: ``--model`` picks an entry of :data:`MODELS`,
which writes the arch record for the data's shape, and :func:`build_from_arch` builds it -- so
what a checkpoint rebuilds is, by construction, what was trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from longtail.errors import LongtailError
from longtail.models.jigsaw_classify_net import JigsawClassifyNet, JigsawClassifyNetConfig
from longtail.models.jigsaw_net import JigsawNet, JigsawNetConfig
from longtail.models.jigsaw_resnet import JigsawResNet, JigsawResNetConfig
from longtail.models.resnet_cifar import CifarResNet, CifarResNetConfig
from longtail.models.seed_cnn import SeedCNN, SeedCNNConfig
from longtail.models.torchvision_models import TorchvisionConfig, build_torchvision, check_input, check_name
from longtail.registry import Registry

# arch record name -> (builder taking its config, the config dataclass with from_dict/to_dict)
ARCHITECTURES: Registry[tuple[Callable[..., nn.Module], type]] = Registry("architecture", {
    "SeedCNN": (SeedCNN, SeedCNNConfig),
    "JigsawNet": (JigsawNet, JigsawNetConfig),
    "JigsawClassifyNet": (JigsawClassifyNet, JigsawClassifyNetConfig),
    "JigsawResNet": (JigsawResNet, JigsawResNetConfig),
    "CifarResNet": (CifarResNet, CifarResNetConfig),
    "torchvision": (build_torchvision, TorchvisionConfig),
})


def arch_record(name: str, config) -> dict:
    """What a checkpoint stores to rebuild the model: its registry name and config."""
    return {"name": name, **config.to_dict()}


def build_module(arch: dict) -> nn.Module:
    """An untrained module of the architecture ``arch`` records; a record that does not fit its
    config raises TypeError or KeyError, a config the network refuses ValueError."""
    fields = dict(arch or {})
    builder, config_cls = ARCHITECTURES.get_entry(str(fields.pop("name", None)))
    return builder(config_cls.from_dict(fields))


def build_from_arch(arch: dict) -> nn.Module:
    """An untrained module of the architecture a checkpoint records."""
    try:
        return build_module(arch)
    except (TypeError, ValueError, KeyError) as e:
        raise LongtailError(f"cannot rebuild a {(arch or {}).get('name')} from its checkpoint record ({e})") from None


# --- what --model names ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRequest:
    """What decides a classifier's shape beyond its name: the data's and the run's settings."""

    in_channels: int = 3
    num_classes: int = 10
    image_size: tuple[int, int] = (32, 32)  # (height, width)
    head: str = "linear"
    padding: str = "same"  # SeedCNN only


def _seed_cnn(variant: str | None, req: ModelRequest) -> dict:
    return arch_record("SeedCNN", SeedCNNConfig(in_channels=req.in_channels, num_classes=req.num_classes,
                                                image_size=req.image_size, padding=req.padding, head=req.head))


def _resnet32(variant: str | None, req: ModelRequest) -> dict:
    return arch_record("CifarResNet", CifarResNetConfig(in_channels=req.in_channels, num_classes=req.num_classes,
                                                        depth=32, head=req.head))


def _torchvision(variant: str | None, req: ModelRequest) -> dict:
    return arch_record("torchvision", TorchvisionConfig.for_model(variant or "", req.num_classes, req.head))


# --model NAME -> (variant after "tv:", request) -> arch record
MODELS: Registry[Callable[[str | None, ModelRequest], dict]] = Registry("model", {
    "seed-cnn": _seed_cnn,
    "resnet32": _resnet32,
    "tv": _torchvision,
})


def split_model_name(model: str) -> tuple[str, str | None]:
    """``"tv:resnet18"`` -> ``("tv", "resnet18")``, ``"resnet32"`` -> ``("resnet32", None)``;
    refuses an unknown name, a tv without its torchvision name, and a variant on the others."""
    family, sep, variant = model.partition(":")
    MODELS.check(family)
    if family == "tv":
        if not variant:
            raise LongtailError("--model tv needs a torchvision model name: tv:NAME, e.g. tv:resnet18")
        check_name(variant)
        return family, variant
    if sep:
        raise LongtailError(f"--model {family} takes no ':{variant}' (only tv:NAME names a variant)")
    return family, None


def model_arch(model: str, req: ModelRequest) -> dict:
    """The arch record of ``--model model`` for data and settings ``req``."""
    family, variant = split_model_name(model)
    return MODELS[family](variant, req)


def build_model(model: str, req: ModelRequest) -> tuple[nn.Module, dict]:
    """The untrained ``--model model`` for ``req`` and the arch record that rebuilds it; images the
    network cannot take are refused in one line."""
    arch = model_arch(model, req)
    h, w = req.image_size
    try:
        net = build_module(arch)
    except ValueError as e:  # e.g. images too small for SeedCNN's three pools
        raise LongtailError(f"{e} ({w}x{h} px with padding {req.padding!r})" if arch["name"] == "SeedCNN"
                            else f"{e} (--model {model}, {w}x{h} px)") from None
    if arch["name"] == "torchvision":
        check_input(net, arch["model"], (req.in_channels, h, w))
    return net, arch


__all__ = ["ARCHITECTURES", "MODELS", "CifarResNet", "CifarResNetConfig", "JigsawClassifyNet",
           "JigsawClassifyNetConfig", "JigsawNet", "JigsawNetConfig", "JigsawResNet", "JigsawResNetConfig",
           "ModelRequest", "SeedCNN", "SeedCNNConfig", "TorchvisionConfig", "arch_record", "build_from_arch",
           "build_model", "build_module", "model_arch", "split_model_name"]
