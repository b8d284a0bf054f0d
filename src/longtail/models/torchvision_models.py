"""torchvision's classification networks by name (``--model tv:resnet18``), untrained.

Always built with ``weights=None``: nothing is ever downloaded. ImageNet (or any) weights come from
a file the user has, through ``--pretrained``. The module is torchvision's own, not wrapped, so its
state_dict keys are those of torchvision's weight files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from longtail.errors import LongtailError
from longtail.models.heads import HEADS, use_cosine_head

# Models whose training-mode output is not a plain logits tensor unless told: their auxiliary
# classifiers are switched off (they return a namedtuple of main and auxiliary logits otherwise), and
# init_weights is given to silence the warning that the default will change.
OPTIONS: dict[str, dict] = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}


def classification_models() -> list[str]:
    """The names torchvision registers as image classifiers (not detection, segmentation, video)."""
    import torchvision.models

    return torchvision.models.list_models(module=torchvision.models)


def check_name(name: str) -> str:
    known = classification_models()
    if name not in known:
        raise LongtailError(f"unknown torchvision classification model {name!r} (--model tv:NAME); choose from "
                            f"{', '.join(known)}")
    return name


@dataclass(frozen=True)
class TorchvisionConfig:
    model: str = "resnet18"  # torchvision's name
    num_classes: int = 10
    head: str = "linear"  # or "cosine": the final Linear replaced by models.heads.CosineLinear
    options: dict = field(default_factory=dict)  # further keyword arguments of torchvision's builder

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TorchvisionConfig:
        return cls(**d)

    @classmethod
    def for_model(cls, model: str, num_classes: int, head: str) -> TorchvisionConfig:
        return cls(model=model, num_classes=num_classes, head=head, options=dict(OPTIONS.get(model, {})))


def build_torchvision(config: TorchvisionConfig) -> nn.Module:
    """torchvision's ``config.model`` with ``num_classes`` outputs and random weights."""
    import torchvision.models

    check_name(config.model)
    if config.head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {config.head!r}")
    model = torchvision.models.get_model(config.model, weights=None, num_classes=config.num_classes,
                                         **config.options)
    if config.head == "cosine":
        use_cosine_head(model, config.num_classes, f"tv:{config.model}")
    return model


def check_input(model: nn.Module, name: str, image_shape: tuple[int, int, int]) -> None:
    """Refuse, in one line, images the network cannot take (torchvision's networks are built for
    3 channels; some need a minimum size, e.g. inception_v3 75 px): one forward of a single zero
    image, in eval mode so BatchNorm accepts a batch of one."""
    c, h, w = image_shape
    if c != 3:
        raise LongtailError(f"tv:{name} takes 3-channel (RGB) images; this dataset's have {c}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, c, h, w, device=next(model.parameters()).device))
    except Exception as e:  # noqa: BLE001 - shape errors come as RuntimeError, ValueError, AssertionError (ViT)
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise LongtailError(f"tv:{name} cannot take {w}x{h} px images ({first})") from None
    finally:
        model.train(was_training)
