"""The jigsaw network with a K-way head: which of a fixed set of K permutations shuffled the
tiles (Noroozi & Favaro 2016), instead of a (g*g) x (g*g) tile->position score matrix.

Same trunk (SeedCNN's layer names, so transfer is unchanged) and the same combining layer; only
the last layer differs: head_hidden -> K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

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
        return self.score(self.puzzle_features(tiles))
