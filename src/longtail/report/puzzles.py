"""Homework 03, figure 1: a handful of test images, their shuffled tiles, and the order the
pretrained jigsaw net restores by row argmax and by Hungarian decoding, wrong tiles in red.

The one part of the report that reads more than the run store: the pretraining run's
checkpoint.pt (loaded with ``weights_only``) and the dataset its config.json names. When either
cannot be had, :func:`solve_examples` raises LongtailError and the report says why instead of
drawing the figure. It never downloads: the official CIFAR-10 is used only when already on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from longtail.data.sources import ImageDataset, dataset_for
from longtail.errors import LongtailError
from longtail.jigsaw import TileOptions, decode, make_puzzles, reassemble
from longtail.jigsaw.sinkhorn import DEFAULT_ITERS, DEFAULT_TAU
from longtail.jigsaw.objective import JigsawObjective
from longtail.report.collect import RunRecord
from longtail.report.figures import literal
from longtail.report.validate import number, shown

EXAMPLES = 6
PUZZLE_SEED = 0x9A2  # the figure's puzzles are the same every time the report is drawn
GUTTER = 1  # white pixels between tiles
WRONG = "#d62728"


@dataclass
class PuzzleExamples:
    run: RunRecord
    grid: int
    images: torch.Tensor  # (N, C, H, W) in [0, 1]
    tiles: torch.Tensor  # (N, k, C, h, w) shuffled, in [0, 1], as drawn
    true: torch.Tensor  # (N, k) the position each shuffled tile came from
    decoded: dict[str, torch.Tensor]  # decoder -> (N, k) predicted positions
    labels: list[str]  # class name of each image


def pretraining_run(pretrain: list[RunRecord]) -> RunRecord | None:
    """The first finished pretraining run with a checkpoint, else the first partial one with one."""
    with_checkpoint = [r for r in pretrain if (r.path / "checkpoint.pt").is_file()]
    return next((r for r in with_checkpoint if not r.partial), with_checkpoint[0] if with_checkpoint else None)


def _local_dataset(config: dict) -> ImageDataset:
    spec = config.get("data")
    if not isinstance(spec, str) or not spec:
        raise LongtailError("the pretraining run's config.json names no dataset")
    fingerprint = config.get("dataset_fingerprint")
    # the run's own size and split options; a report downloads nothing
    ds = dataset_for(config, download=False)
    if fingerprint and ds.fingerprint != fingerprint:
        raise LongtailError(f"the data at {spec} is not what the run was trained on "
                            f"(fingerprint {ds.fingerprint[:16]}, the run's {str(fingerprint)[:16]})")
    return ds


def _pick(labels: torch.Tensor, count: int) -> list[int]:
    """The first test image of each class, in class order, then the next images, up to ``count``."""
    first = [int(torch.nonzero(labels == c)[0]) for c in torch.unique(labels).tolist()]
    rest = [i for i in range(labels.numel()) if i not in set(first)]
    return (first + rest)[:count]


def _net(path: Path, ckpt: dict):
    """The jigsaw net a checkpoint holds, built only after its arch and weights are checked against
    each other on the meta device: a checkpoint edited to claim a net of a billion channels must
    not make the report allocate one."""
    from longtail.models.jigsaw_net import JigsawNet, JigsawNetConfig

    not_jigsaw = LongtailError(f"{shown(path)} is not a jigsaw pretraining checkpoint")
    arch = ckpt.get("arch")
    if ckpt.get("kind") != "jigsaw" or not isinstance(arch, dict) or arch.get("name") != "JigsawNet":
        raise not_jigsaw
    try:
        config = JigsawNetConfig.from_dict({k: v for k, v in arch.items() if k != "name"})
        with torch.device("meta"):
            skeleton = JigsawNet(config)
    except (KeyError, TypeError, ValueError, RuntimeError):
        raise not_jigsaw from None
    weights = ckpt.get("model")
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if not (isinstance(weights, dict) and all(isinstance(v, torch.Tensor) for v in weights.values())
            and {k: tuple(v.shape) for k, v in weights.items()} == shapes):
        raise LongtailError(f"{shown(path)} does not hold a complete jigsaw net (its weights do not match its arch)")
    model = JigsawNet(config)
    model.load_state_dict(weights)
    return config, model.eval()


def _option(cfg: dict, key: str, default, ok) -> object:
    value = cfg.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not ok(value):
        raise LongtailError(f"the pretraining run's config.json has {key} = {shown(value)[:40]}, which the "
                            "puzzles cannot be posed with")
    return value


def solve_examples(run: RunRecord, count: int = EXAMPLES) -> PuzzleExamples:
    """Shuffle ``count`` test images with fixed puzzles and decode them with the run's net."""
    from longtail.runs import load_checkpoint

    path = run.path / "checkpoint.pt"
    ckpt = load_checkpoint(path)
    net_config, model = _net(path, ckpt)
    cfg = run.config
    gap = _option(cfg, "gap", 0, lambda v: isinstance(v, int) and 0 <= v < min(net_config.tile_size))
    iters = _option(cfg, "sinkhorn_iters", DEFAULT_ITERS, lambda v: isinstance(v, int) and 1 <= v <= 1000)
    tau = _option(cfg, "tau", DEFAULT_TAU, lambda v: number(v) is not None and v > 0)
    norm = ckpt.get("normalization")
    try:
        mean, std = (torch.tensor(norm[k], dtype=torch.float32).view(1, -1, 1, 1) for k in ("mean", "std"))
    except (KeyError, TypeError, ValueError, RuntimeError):
        mean = std = None
    if mean is None or mean.numel() != net_config.in_channels or std.numel() != net_config.in_channels \
            or not bool((std > 0).all()):
        raise LongtailError(f"{shown(path)} holds no usable normalization for its {net_config.in_channels} channel(s)")
    ds = _local_dataset(cfg)
    grid = net_config.grid
    expected = (net_config.in_channels, grid * net_config.tile_size[0], grid * net_config.tile_size[1])
    if ds.image_shape != expected:
        raise LongtailError(f"the images at {shown(cfg['data'])} are {ds.image_shape}, the net was trained on {expected}")

    chosen = _pick(ds.test_labels, count)
    images = ds.test_images[chosen].float().div(255)
    options = TileOptions(gap=gap, tile_norm=bool(cfg.get("tile_norm")))
    # The net sees normalized (and, with the anti-shortcut options, prepared) tiles; the figure
    # shows the plain ones. Puzzles from equal generators share their permutations.
    net_tiles, target = make_puzzles((images - mean) / std, grid, torch.Generator().manual_seed(PUZZLE_SEED),
                                     options, train=False)
    plain_tiles, _ = make_puzzles(images, grid, torch.Generator().manual_seed(PUZZLE_SEED), train=False)
    task = JigsawObjective(grid, options, iters, tau)
    with torch.no_grad():
        log_probs = task.log_assignment(model, net_tiles)
    decoded = {method: decode(log_probs, method) for method in ("argmax", "hungarian")}
    return PuzzleExamples(run, grid, images, plain_tiles, target.argmax(dim=2), decoded,
                          [ds.classes[int(ds.test_labels[i])] for i in chosen])


def _short(label: str, limit: int = 18) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "\u2026"


def _rgb(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) for imshow; grey images repeated to three channels."""
    array = image.clamp(0, 1).permute(1, 2, 0).numpy()
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def _mosaic(cells: list[torch.Tensor | None], grid: int) -> np.ndarray:
    """Tiles at grid positions 0..k-1 (row-major) with white gutters; an empty position is grey."""
    filled = next(c for c in cells if c is not None)
    h, w = filled.shape[1:]
    size = (grid * h + (grid - 1) * GUTTER, grid * w + (grid - 1) * GUTTER)
    canvas = np.ones((*size, 3))
    for position, tile in enumerate(cells):
        r, c = divmod(position, grid)
        top, left = r * (h + GUTTER), c * (w + GUTTER)
        canvas[top:top + h, left:left + w] = 0.5 if tile is None else _rgb(tile)
    return canvas


def _placed(tiles: torch.Tensor, positions: torch.Tensor) -> tuple[list[torch.Tensor | None], list[int | None]]:
    """Each tile put where ``positions`` says; with argmax two tiles may claim one position (the
    later one is shown) and another stays empty. Returns (tile per position, tile index per position)."""
    cells: list[torch.Tensor | None] = [None] * tiles.shape[0]
    owner: list[int | None] = [None] * tiles.shape[0]
    for i, position in enumerate(positions.tolist()):
        cells[position], owner[position] = tiles[i], i
    return cells, owner


def _mark_wrong(ax, owner: list[int | None], true: torch.Tensor, tile_hw: tuple[int, int], grid: int) -> int:
    """Red frame around every position holding a wrong tile or none; returns how many are right."""
    h, w = tile_hw
    right = 0
    for position, i in enumerate(owner):
        if i is not None and int(true[i]) == position:
            right += 1
            continue
        r, c = divmod(position, grid)
        ax.add_patch(Rectangle((c * (w + GUTTER) - 0.5, r * (h + GUTTER) - 0.5), w, h, fill=False,
                               edgecolor=WRONG, linewidth=2))
    return right


def puzzle_figure(examples: PuzzleExamples) -> Figure:
    """One row per image: the image, its shuffled tiles, the argmax and the Hungarian restoration."""
    n, k = examples.true.shape
    grid = examples.grid
    tile_hw = tuple(examples.tiles.shape[-2:])
    fig = Figure(figsize=(8, 2.0 * n), layout="constrained")
    axes = fig.subplots(n, 4, squeeze=False)
    titles = ("image", "shuffled tiles (the net's input)", "restored by argmax", "restored by Hungarian")
    for b, row in enumerate(axes):
        # the image put back together from its shown tiles: what the figure shows is the puzzle posed
        original = reassemble(examples.tiles[b:b + 1], torch.nn.functional.one_hot(examples.true[b:b + 1], k).float(),
                              grid)[0]
        row[0].imshow(_rgb(original), interpolation="nearest")
        row[0].set_ylabel(literal(_short(examples.labels[b])), fontsize=9)
        row[1].imshow(_mosaic(list(examples.tiles[b]), grid), interpolation="nearest")
        for ax, method in zip(row[2:], ("argmax", "hungarian")):
            cells, owner = _placed(examples.tiles[b], examples.decoded[method][b])
            ax.imshow(_mosaic(cells, grid), interpolation="nearest")
            right = _mark_wrong(ax, owner, examples.true[b], tile_hw, grid)
            ax.set_xlabel(f"{right} of {k} tiles right", fontsize=8)
        for ax, title in zip(row, titles):
            ax.set_xticks([])
            ax.set_yticks([])
            if b == 0:
                ax.set_title(title, fontsize=9)
    return fig

