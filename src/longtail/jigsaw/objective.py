"""The jigsaw objective: a batch of images -> puzzles -> loss; a split -> puzzle metrics.

Class labels are ignored: the label of a puzzle is its permutation matrix. Training puzzles are
drawn from a generator derived from (run seed, epoch, step), so a resumed run sees the puzzles it
would have seen; evaluation puzzles come from a constant, so every epoch is scored on the same ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from longtail.data.loader import BatchLoader
from longtail.seeding import derived_generator
from longtail.device import autocast
from longtail.jigsaw.metrics import jigsaw_metrics, position_figures
from longtail.jigsaw.sinkhorn import DEFAULT_ITERS, DEFAULT_TAU, log_sinkhorn
from longtail.jigsaw.tiles import TileOptions, make_puzzles

TRAIN_STREAM = 0x7165  # tags the training-puzzle stream among a step's random streams
EVAL_SEED = 0xE7A1  # the constant the evaluation puzzles derive from


def permutation_bce(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy between the doubly-stochastic matrix exp(log_probs) and the permutation
    matrix, averaged over every entry; computed in fp32 whatever autocast is active."""
    with torch.autocast(log_probs.device.type, enabled=False):
        return F.binary_cross_entropy(log_probs.float().exp(), target.float())


class JigsawObjective:
    def __init__(self, grid: int = 2, tile_options: TileOptions = TileOptions(),
                 sinkhorn_iters: int = DEFAULT_ITERS, tau: float = DEFAULT_TAU):
        self.grid = grid
        self.tile_options = tile_options
        self.sinkhorn_iters = sinkhorn_iters
        self.tau = tau

    def start_epoch(self, epoch: int) -> None:
        pass

    def log_assignment(self, model: nn.Module, tiles: torch.Tensor) -> torch.Tensor:
        """Log of the doubly-stochastic tile->position matrix; Sinkhorn runs in fp32, since bf16's
        8-bit mantissa cannot hold the row and column sums near 1."""
        scores = model(tiles)
        with torch.autocast(scores.device.type, enabled=False):
            return log_sinkhorn(scores.float(), self.sinkhorn_iters, self.tau)

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_seed: tuple) -> torch.Tensor:
        tiles, target = make_puzzles(x, self.grid, derived_generator(*step_seed, TRAIN_STREAM), self.tile_options)
        return permutation_bce(self.log_assignment(model, tiles), target)

    @torch.no_grad()
    def predict(self, model: nn.Module, loader: BatchLoader,
                precision: str) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(log doubly-stochastic outputs, permutation-matrix targets, mean loss) over a split's
        fixed puzzles."""
        was_training = model.training
        model.eval()
        outputs, targets, loss_sum, count = [], [], 0.0, 0
        for step, (x, _) in enumerate(loader.epoch(0)):
            tiles, target = make_puzzles(x, self.grid, derived_generator(EVAL_SEED, step), self.tile_options,
                                         train=False)
            with autocast(loader.device, precision):
                log_probs = self.log_assignment(model, tiles)
            loss_sum += float(permutation_bce(log_probs, target)) * x.shape[0]
            count += x.shape[0]
            outputs.append(log_probs.cpu())
            targets.append(target.cpu())
        model.train(was_training)
        return torch.cat(outputs), torch.cat(targets), loss_sum / max(count, 1)

    def evaluate(self, model: nn.Module, loader: BatchLoader, precision: str) -> dict:
        log_probs, target, loss = self.predict(model, loader, precision)
        metrics = jigsaw_metrics(log_probs, target)
        return {"loss": loss, **metrics, "score": metrics["puzzle_acc_hungarian"]}


class PermutationClassObjective:
    """The puzzle as a K-way classification (Noroozi & Favaro 2016): each image is shuffled by a
    member of a fixed permutation set, drawn per image from the step's generator, and the net
    names which member by cross-entropy. Evaluation decodes the predicted member back to tile
    positions, so the position figures compare with the Sinkhorn head's ("_classify" suffix)."""

    def __init__(self, grid: int, permutations: torch.Tensor, tile_options: TileOptions = TileOptions()):
        self.grid = grid
        self.permutations = permutations.long().cpu()
        self.tile_options = tile_options

    def puzzles(self, x: torch.Tensor, generator: torch.Generator,
                train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Shuffled tiles and their (N,) class: the index of the set member that shuffled them."""
        classes = torch.randint(len(self.permutations), (x.shape[0],), generator=generator)
        tiles, _ = make_puzzles(x, self.grid, generator, self.tile_options, train=train,
                                positions=self.permutations[classes])
        return tiles, classes.to(x.device)

    def training_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, step_seed: tuple) -> torch.Tensor:
        tiles, classes = self.puzzles(x, derived_generator(*step_seed, TRAIN_STREAM), train=True)
        return F.cross_entropy(model(tiles).float(), classes)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: BatchLoader, precision: str) -> dict:
        was_training = model.training
        model.eval()
        logits_all, classes_all = [], []
        for step, (x, _) in enumerate(loader.epoch(0)):
            tiles, classes = self.puzzles(x, derived_generator(EVAL_SEED, step), train=False)
            with autocast(loader.device, precision):
                logits_all.append(model(tiles).float().cpu())
            classes_all.append(classes.cpu())
        model.train(was_training)
        logits, classes = torch.cat(logits_all), torch.cat(classes_all)
        predicted = logits.argmax(dim=1)
        accuracy = float((predicted == classes).double().mean())
        return {"loss": float(F.cross_entropy(logits, classes)), "permutation_acc": accuracy,
                **position_figures(self.permutations[predicted], self.permutations[classes], "classify"),
                # the softmax probability of the true member: the classification head's confidence
                "confidence": float(logits.softmax(dim=1).gather(1, classes[:, None]).double().mean()),
                "score": accuracy}
