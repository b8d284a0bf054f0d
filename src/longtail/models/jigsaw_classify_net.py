"""The jigsaw network with a K-way head: which of a fixed set of K permutations shuffled the
tiles (Noroozi & Favaro 2016), instead of a (g*g) x (g*g) tile->position score matrix.

Same trunk (SeedCNN's layer names, so transfer is unchanged) and the same combining layer; only
the last layer differs: head_hidden -> K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from longtail.errors import LongtailError
from longtail.models.jigsaw_net import JigsawNet, JigsawNetConfig


@dataclass(frozen=True)
class JigsawClassifyNetConfig(JigsawNetConfig):
    permutations: int = 100  # K, the number of classes


class JigsawClassifyNet(JigsawNet):
    def __init__(self, config: JigsawClassifyNetConfig = JigsawClassifyNetConfig()):
        super().__init__(config)
        self.score = nn.Linear(config.head_hidden, config.permutations)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """(N, g*g, C, h, w) shuffled tiles -> (N, K) logits over the permutation set."""
        n, k = tiles.shape[:2]
        if k != self.config.tiles:
            raise LongtailError(f"this net solves {self.config.grid}x{self.config.grid} puzzles "
                                f"({self.config.tiles} tiles), got {k} tiles")
        flat = tiles.reshape(n * k, *tiles.shape[2:]).contiguous(memory_format=torch.channels_last)
        features = self.trunk(flat).reshape(n, k * self.config.tile_features)
        return self.score(F.relu(self.combine(features)))
