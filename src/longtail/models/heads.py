"""Classifier heads: the cosine head LDAM-DRW assumes, and swapping it into a finished network.

A linear head is plain ``nn.Linear``. The cosine head (Cao et al. 2019's ``NormedLinear``) gives
logits cos(feature, class weight) in [-1, 1]; LDAM multiplies them by s = 30, which a linear head's
unbounded logits cannot take (they diverge within two epochs, docs/imbalance.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from longtail.errors import LongtailError

HEADS = ("linear", "cosine")


class CosineLinear(nn.Module):
    """Logits = normalise(x) @ normalise(W).T, no bias.

    ``weight`` is (num_classes, in_features) like ``nn.Linear``'s; LDAM's NormedLinear stores the
    transpose. Initialised as LDAM's: uniform(-1, 1), each class vector scaled to norm 1, drawn in
    the transposed layout so that the same seed gives LDAM's numbers."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        drawn = torch.empty(in_features, out_features).uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)
        self.weight = nn.Parameter(drawn.T.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 even under bf16 autocast: LDAM scales these cosines by 30, and bf16's 8-bit mantissa
        # would put ~0.1 of noise on every scaled logit; the matmul is (batch x features x classes), cheap.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.linear(F.normalize(x.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def make_head(head: str, in_features: int, num_classes: int) -> nn.Module:
    """The last layer a ``head`` setting names."""
    if head == "linear":
        return nn.Linear(in_features, num_classes)
    if head == "cosine":
        return CosineLinear(in_features, num_classes)
    raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")


def classifier_layer(model: nn.Module, num_classes: int) -> str:
    """The name of ``model``'s class-scoring layer: the last module (in registration order) whose
    weight has ``num_classes`` output rows. Every network here, and torchvision's classifiers, register
    their classifier last (resnet's fc, mobilenet's classifier.3, squeezenet's 1x1 conv classifier.1)."""
    found = ""
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() >= 2 and weight.shape[0] == num_classes:
            found = name
    if not found:
        raise LongtailError(f"{type(model).__name__} has no layer with {num_classes} outputs to call its classifier")
    return found


def use_cosine_head(model: nn.Module, num_classes: int, described: str) -> None:
    """Replace ``model``'s final ``nn.Linear`` (the classifier) by a :class:`CosineLinear` of the
    same shape; ``described`` names the model in the refusal when its classifier is not a Linear."""
    name = classifier_layer(model, num_classes)
    layer = model.get_submodule(name)
    if not isinstance(layer, nn.Linear):
        raise LongtailError(f"{described} scores classes with a {type(layer).__name__} ({name}), not a Linear layer, "
                            "so it has no cosine head; use --head linear")
    model.set_submodule(name, CosineLinear(layer.in_features, layer.out_features))
