"""A jigsaw network whose tile trunk is ResNet-32 (He et al.'s CIFAR ResNet without its last
layer), so that the trunk transfers into ``--model resnet32`` by name and shape.

A ResNet pools globally, so it takes a 16x16 tile as it takes a 32x32 image: every trunk layer
(conv1, bn1, layer1..3, the classifier's own names) fits the classifier as it is. After the trunk
the head is the seed's jigsaw net's: fc2 (64 -> tile_features) per tile, the tiles' features
concatenated -> combine -> either (g*g) x (g*g) tile->position scores for Sinkhorn or, with
``permutations = K``, K logits over a fixed permutation set (Noroozi & Favaro 2016).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from longtail.models.arch_config import ArchConfig
from longtail.models.jigsaw_net import puzzle_features
from longtail.models.resnet_cifar import CifarResNet, CifarResNetConfig


@dataclass(frozen=True)
class JigsawResNetConfig(ArchConfig):
    in_channels: int = 3
    grid: int = 2
    tile_size: tuple[int, int] = (16, 16)  # (height, width); recorded, the trunk takes any size
    depth: int = 32
    widths: tuple[int, int, int] = (16, 32, 64)
    tile_features: int = 256
    head_hidden: int = 256
    permutations: int = 0  # K of the classify head; 0: the Sinkhorn head's (g*g) x (g*g) scores

    @property
    def tiles(self) -> int:
        return self.grid * self.grid


class JigsawResNet(CifarResNet):
    def __init__(self, config: JigsawResNetConfig = JigsawResNetConfig()):
        super().__init__(CifarResNetConfig(in_channels=config.in_channels, num_classes=1, depth=config.depth,
                                           widths=config.widths))
        del self.linear  # the classifier's layer: a puzzle has no classes
        self.config = config
        k = config.tiles
        self.fc2 = nn.Linear(config.widths[-1], config.tile_features)
        self.combine = nn.Linear(k * config.tile_features, config.head_hidden)
        self.score = nn.Linear(config.head_hidden, config.permutations or k * k)

    def trunk(self, tiles: torch.Tensor) -> torch.Tensor:
        """(M, C, h, w) tiles -> (M, tile_features)."""
        return F.relu(self.fc2(self.features(tiles)))

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """(N, g*g, C, h, w) shuffled tiles -> (N, g*g, g*g) scores, or (N, K) permutation logits."""
        scores = self.score(puzzle_features(self, tiles))
        if self.config.permutations:
            return scores
        return scores.reshape(len(tiles), self.config.tiles, self.config.tiles)
