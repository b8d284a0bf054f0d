"""The CIFAR ResNet of He et al. 2016 (section 4.2), as the long-tail literature trains it.

Depth 6n+2: a 3x3 conv to 16 channels, three stages of n basic blocks at widths 16/32/64 (the
second and third halve the resolution in their first block), global average pool, one linear or
cosine layer. ResNet-32 (n = 5) has 0.46 M parameters. Shortcuts are option A, parameter-free:
where a block halves the resolution and doubles the width, the identity is subsampled by 2 and
zero-padded with the new channels.

This follows Cao et al. 2019's LDAM-DRW code (models/resnet_cifar.py there), the reference most
long-tail CIFAR results use: the same layer names (conv1, bn1, layer1..3, linear), so a state_dict
from that code loads with --pretrained, and its initialisation (Kaiming-normal conv and linear
weights, fan-in; BatchNorm at weight 1, bias 0; the linear bias at PyTorch's default).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from longtail.models.heads import make_head


@dataclass(frozen=True)
class CifarResNetConfig:
    in_channels: int = 3
    num_classes: int = 10
    depth: int = 32  # 6n + 2: n basic blocks per stage
    widths: tuple[int, int, int] = (16, 32, 64)
    head: str = "linear"  # or "cosine" (models.heads.CosineLinear)

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CifarResNetConfig:
        return cls(**{**d, "widths": tuple(d["widths"])})


class ZeroPadShortcut(nn.Module):
    """Option A: x[:, :, ::stride, ::stride] with (out - in) zero channels split around it."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)), 3x3 convs without bias (BatchNorm follows)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = (ZeroPadShortcut(in_planes, planes, stride) if stride != 1 or in_planes != planes
                         else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, config: CifarResNetConfig = CifarResNetConfig()):
        super().__init__()
        if config.depth < 8 or (config.depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet's depth is 6n+2 (20, 32, 44, 56, 110), got {config.depth}")
        self.config = config
        w1, w2, w3 = config.widths
        n = config.blocks_per_stage
        self.conv1 = nn.Conv2d(config.in_channels, w1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.layer1 = self._stage(w1, w1, n, stride=1)
        self.layer2 = self._stage(w1, w2, n, stride=2)
        self.layer3 = self._stage(w2, w3, n, stride=2)
        self.linear = make_head(config.head, w3, config.num_classes)
        for m in self.modules():
            # the cosine head keeps its own unit-norm init (LDAM's code applies this init to
            # nn.Linear and nn.Conv2d only, not to its NormedLinear)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_planes, planes, stride),
                             *(BasicBlock(planes, planes) for _ in range(blocks - 1)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, widths[-1]): the pooled features the head scores."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))
