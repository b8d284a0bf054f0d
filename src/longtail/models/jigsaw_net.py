"""The seed report's jigsaw network (Homework 03, table 1), for a g x g puzzle.

A trunk shared by all tiles: conv3x3x32 'same' -> maxpool2 -> conv3x3x64 -> maxpool2 ->
conv3x3x64 -> BatchNorm -> flatten -> fc 1024->64 -> fc 64->256 (ReLU after each conv and fc);
the g*g tile outputs concatenated -> fc ->256 -> fc ->(g*g)^2, reshaped to a (g*g) x (g*g) score
matrix (row: shuffled tile, column: grid position).

The trunk's layer names are SeedCNN's (conv1, conv2, conv3, bn, fc1), so the transfer map reads
as name -> same name. A 16x16 tile after two pools has the 4x4x64 = 1024 features a 32x32 image
has after SeedCNN's three, which is why fc1 fits both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from longtail.errors import LongtailError
from longtail.models.arch_config import ArchConfig
from longtail.models.seed_cnn import conv_out, conv_relu_pool


@dataclass(frozen=True)
class JigsawNetConfig(ArchConfig):
    in_channels: int = 3
    grid: int = 2
    tile_size: tuple[int, int] = (16, 16)  # (height, width)
    width: tuple[int, int, int] = (32, 64, 64)
    hidden: int = 64  # trunk fc1 output, SeedCNN's hidden size
    tile_features: int = 256  # trunk fc2 output per tile
    head_hidden: int = 256

    @property
    def tiles(self) -> int:
        return self.grid * self.grid


class JigsawNet(nn.Module):
    def __init__(self, config: JigsawNetConfig = JigsawNetConfig()):
        super().__init__()
        self.config = config
        c1, c2, c3 = config.width
        self.conv1 = nn.Conv2d(config.in_channels, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.bn = nn.BatchNorm2d(c3)
        try:
            h, w = (conv_out(s, "same", pools=2) for s in config.tile_size)
        except ValueError:
            raise LongtailError(f"{config.tile_size[1]}x{config.tile_size[0]} px tiles are too small for the "
                                "jigsaw trunk (two 2x2 max-pools need at least 4 px a side)") from None
        self.fc1 = nn.Linear(c3 * h * w, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.tile_features)
        self.combine = nn.Linear(config.tiles * config.tile_features, config.head_hidden)
        self.score = nn.Linear(config.head_hidden, config.tiles * config.tiles)

    def trunk(self, tiles: torch.Tensor) -> torch.Tensor:
        """(M, C, h, w) tiles -> (M, tile_features)."""
        x = conv_relu_pool(self.conv1, tiles)
        x = conv_relu_pool(self.conv2, x)
        x = self.bn(F.relu(self.conv3(x)))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.relu(self.fc2(x))

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """(N, g*g, C, h, w) shuffled tiles -> (N, g*g, g*g) scores."""
        n, k = tiles.shape[:2]
        return self.score(self.puzzle_features(tiles)).reshape(n, k, k)

    def puzzle_features(self, tiles: torch.Tensor) -> torch.Tensor:
        """(N, g*g, C, h, w) shuffled tiles -> (N, head_hidden): every tile's trunk features, combined."""
        return puzzle_features(self, tiles)


def puzzle_features(net: nn.Module, tiles: torch.Tensor) -> torch.Tensor:
    """What every jigsaw net does with its tile trunk: (N, g*g, C, h, w) shuffled tiles -> each
    tile's ``net.trunk`` features, concatenated in shuffled order -> ``net.combine`` -> (N, head_hidden)."""
    config = net.config
    n, k = tiles.shape[:2]
    if k != config.tiles:
        raise LongtailError(f"this net solves {config.grid}x{config.grid} puzzles ({config.tiles} tiles), "
                            f"got {k} tiles")
    # All tiles of the batch go through the trunk as one batch: one big conv, not g*g small ones.
    flat = tiles.reshape(n * k, *tiles.shape[2:]).contiguous(memory_format=torch.channels_last)
    features = net.trunk(flat).reshape(n, k * config.tile_features)
    return F.relu(net.combine(features))
