"""Jigsaw puzzles from a batch: cut each image into a g x g grid, shuffle the tiles per image.

Tile positions are numbered row-major (0 = top left). A puzzle's label is a permutation matrix
``P`` of shape (g*g, g*g) with ``P[i, j] = 1`` when shuffled tile ``i`` came from position ``j``;
each row and each column holds exactly one 1.

The optional anti-shortcut measures stop the net from solving puzzles by low-level cues rather
than by content: ``gap`` (tiles no longer share an exact border, so edge continuity is gone),
``tile_norm`` (each tile's per-channel mean and spread no longer match its neighbours'),
``grayscale`` (no chromatic-aberration cue to where a tile sat in the lens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from longtail.errors import LongtailError


@dataclass(frozen=True)
class TileOptions:
    """How tiles are prepared. All off is the seed report's plain 2x2 puzzle."""

    gap: int = 0  # pixels: each tile is cropped to (size - gap) at a random offset, then resized back
    tile_norm: bool = False  # standardize each tile per channel
    grayscale: float = 0.0  # probability that an image's tiles are all turned grey


def tile_size(height: int, width: int, grid: int) -> tuple[int, int]:
    """The (height, width) of one tile; refuses a grid that does not divide the image."""
    if grid < 2:
        raise LongtailError(f"the jigsaw grid must be at least 2, got {grid}")
    if height % grid or width % grid:
        raise LongtailError(f"a {grid}x{grid} grid does not divide {width}x{height} px images into equal tiles "
                            f"(choose a grid that divides both sides)")
    return height // grid, width // grid


def cut_tiles(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, grid*grid, C, H/grid, W/grid), tiles in row-major order."""
    n, c, h, w = x.shape
    th, tw = tile_size(h, w, grid)
    return x.reshape(n, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, c, th, tw)


def join_tiles(tiles: torch.Tensor, grid: int) -> torch.Tensor:
    """The inverse of :func:`cut_tiles`."""
    n, k, c, th, tw = tiles.shape
    if k != grid * grid:
        raise LongtailError(f"expected {grid * grid} tiles per image for a {grid}x{grid} grid, got {k}")
    return tiles.reshape(n, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, grid * th, grid * tw)


def random_positions(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` independent uniform permutations of ``range(k)`` as one (n, k) tensor: the argsort of
    i.i.d. uniforms is a uniform permutation, so no per-image Python loop is needed."""
    return torch.rand(n, k, generator=generator).argsort(dim=1)


def permutation_matrices(positions: torch.Tensor) -> torch.Tensor:
    """(N, k) positions -> (N, k, k) float matrices with ``P[b, i, positions[b, i]] = 1``."""
    return F.one_hot(positions, positions.shape[1]).float()


def shuffle_tiles(tiles: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Shuffled tile ``i`` of image ``b`` is the tile from grid position ``positions[b, i]``."""
    index = positions.to(tiles.device).view(*positions.shape, 1, 1, 1).expand(-1, -1, *tiles.shape[2:])
    return tiles.gather(1, index)


def unshuffle_tiles(shuffled: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Put every tile back at its position: the inverse of :func:`shuffle_tiles`."""
    return shuffle_tiles(shuffled, positions.argsort(dim=1))


def make_puzzles(x: torch.Tensor, grid: int, generator: torch.Generator,
                 options: TileOptions = TileOptions(), train: bool = True,
                 positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiles (N, grid*grid, C, h, w) of every image, shuffled, and their (N, k, k) permutation matrices.

    Random draws come from ``generator`` (on the CPU), so the same generator state gives the same
    puzzles. With ``train=False`` the anti-shortcut measures keep only their deterministic part
    (a centred crop for ``gap``, ``tile_norm``), so evaluation puzzles do not vary by chance.
    ``positions`` (N, k) imposes the shuffles (members of a permutation set) instead of drawing them.
    """
    tiles = cut_tiles(x, grid)
    n, k = tiles.shape[:2]
    if positions is None:
        positions = random_positions(n, k, generator)
    if train and options.grayscale > 0:
        tiles = random_grayscale(tiles, options.grayscale, generator)
    if options.gap > 0:
        tiles = jitter_tiles(tiles, options.gap, generator if train else None)
    if options.tile_norm:
        tiles = normalize_tiles(tiles)
    return shuffle_tiles(tiles, positions), permutation_matrices(positions).to(x.device)


def reassemble(shuffled: torch.Tensor, target: torch.Tensor, grid: int) -> torch.Tensor:
    """The images back from shuffled tiles and their permutation matrices."""
    return join_tiles(unshuffle_tiles(shuffled, target.argmax(dim=2)), grid)


def random_grayscale(tiles: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Turn all tiles of an image grey (luma in every channel) with probability ``p`` per image."""
    if tiles.shape[2] != 3:
        return tiles
    grey = TF.rgb_to_grayscale(tiles.flatten(0, 1), num_output_channels=3).reshape(tiles.shape)
    coin = (torch.rand(tiles.shape[0], generator=generator) < p).to(tiles.device).view(-1, 1, 1, 1, 1)
    return torch.where(coin, grey, tiles)


def jitter_tiles(tiles: torch.Tensor, gap: int, generator: torch.Generator | None) -> torch.Tensor:
    """Crop every tile to (h - gap, w - gap) at a random offset (centred without a generator) and
    resize it back to (h, w), so neighbouring tiles no longer meet at a shared edge."""
    n, k, c, h, w = tiles.shape
    if not 0 < gap < min(h, w):
        raise LongtailError(f"the tile gap must be between 1 and {min(h, w) - 1} px for {w}x{h} px tiles, got {gap}")
    flat = tiles.reshape(n * k, c, h, w)
    if generator is None:
        dy = dx = torch.full((n * k,), gap // 2, dtype=torch.long)
    else:
        dy = torch.randint(0, gap + 1, (n * k,), generator=generator)
        dx = torch.randint(0, gap + 1, (n * k,), generator=generator)
    dy, dx = dy.to(tiles.device), dx.to(tiles.device)
    rows = (dy[:, None] + torch.arange(h - gap, device=tiles.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w - gap, device=tiles.device))[:, None, None, :]
    batch = torch.arange(n * k, device=tiles.device)[:, None, None, None]
    chan = torch.arange(c, device=tiles.device)[None, :, None, None]
    crops = flat[batch, chan, rows, cols]
    return F.interpolate(crops, size=(h, w), mode="bilinear", align_corners=False).reshape(n, k, c, h, w)


def normalize_tiles(tiles: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Standardize each tile per channel: zero mean, unit standard deviation."""
    mean = tiles.mean(dim=(-2, -1), keepdim=True)
    std = tiles.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (tiles - mean) / (std + eps)
