"""The batch iterator: the dataset is one uint8 tensor (in memory, or memory-mapped and chosen by
an index, see views.py); batches are gathered, augmented and normalized as whole tensors. No
DataLoader, no per-sample Python, no PIL."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from longtail.data.augment import BatchAugment
from longtail.data.views import IndexedImages
from longtail.seeding import derived_generator

IndexOrder = Callable[[int, torch.Generator], torch.Tensor]


# Values per float64 chunk of channel_stats: 64 MiB, whatever the image size.
_STATS_CHUNK_VALUES = 8 * 1024 * 1024


def eval_batch_size(height: int, width: int) -> int:
    """Images per evaluation batch: 1,024 at 32x32 (CIFAR-10), fewer for larger images so a batch's
    activations stay about the same size (at 128x128 one batch of 1,024 would need about 1 GiB for
    the first convolution alone). The run and inference use the same rule, so predictions see the
    shapes the run's test did."""
    return max(16, 1024 * 32 * 32 // max(1, height * width))


def channel_stats(images: torch.Tensor | IndexedImages, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, on the [0, 1] scale.

    Summed chunk by chunk (at most ``chunk`` images and 64 MiB of float64 at a time) in float64:
    a float copy of all of CIFAR-10 would cost 0.5 GB. The sums are of integers below 2**53, so
    they are exact and the result does not depend on the chunking.
    """
    c = images.shape[1]
    chunk = max(1, min(chunk, _STATS_CHUNK_VALUES // max(1, math.prod(images.shape[1:]))))
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start:start + chunk].to(torch.float64).transpose(0, 1).reshape(c, -1)
        total += x.sum(dim=1)
        squares += (x * x).sum(dim=1)
    n = images.numel() // c
    mean = total / n
    var = (squares - n * mean * mean) / max(n - 1, 1)
    return (mean / 255).tolist(), (var.clamp_min(0).sqrt() / 255).clamp_min(1e-3).tolist()


class BatchLoader:
    """Yields ``(images, labels)`` batches: float, normalized, channels_last, on ``device``.

    With ``shuffle`` each epoch visits every index once in a fresh order drawn from
    ``(seed, epoch)``; ``index_order`` replaces that order (a sampler may repeat indices).
    With ``world_size > 1`` each rank takes every ``world_size``-th index of the same order,
    so the ranks share the epoch without overlap.

    ``images`` in memory move to ``device`` whole, as airbench keeps its dataset; an
    :class:`IndexedImages` view (a memory-mapped source) stays where it is and each batch is
    gathered from it, ``source[index[batch]]``, then moved.
    """

    def __init__(self, images: torch.Tensor | IndexedImages, labels: torch.Tensor, batch_size: int, *,
                 mean: list[float], std: list[float], shuffle: bool = False, seed: int = 0,
                 augment: BatchAugment | None = None, device: torch.device | str = "cpu",
                 channels_last: bool = True, index_order: IndexOrder | None = None,
                 copy_mask: torch.Tensor | None = None, copy_augment: BatchAugment | None = None,
                 rank: int = 0, world_size: int = 1):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        self.device = torch.device(device)
        self.images = images if isinstance(images, IndexedImages) else images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.channels_last = channels_last
        self.index_order = index_order
        # Oversampled copies flagged in copy_mask get copy_augment drawn afresh in every batch.
        self.copy_mask = copy_mask.to(self.device) if copy_mask is not None else None
        self.copy_augment = copy_augment
        self.rank, self.world_size = rank, world_size
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return -(-self._epoch_size() // self.batch_size)

    @property
    def num_samples(self) -> int:
        return self._epoch_size()

    def _epoch_size(self, epoch: int = 0) -> int:
        n = (len(self.index_order(epoch, torch.Generator().manual_seed(0))) if self.index_order
             else self.images.shape[0])
        return -(-n // self.world_size)  # every rank the same count (see _global_order), or DDP would hang

    def steps_in(self, epoch: int) -> int:
        """Steps of ``epoch``. ``len()`` is epoch 0's; they differ only under deferred re-sampling
        with a copy-type rebalancer (the original samples before the switch, all copies after)."""
        return -(-self._epoch_size(epoch) // self.batch_size)

    def total_steps(self, epochs: int) -> int:
        """Steps of epochs 0 .. epochs - 1 together (what a per-step schedule spans)."""
        if self.index_order is None:
            return epochs * len(self)
        return sum(self.steps_in(e) for e in range(epochs))

    def _global_order(self, epoch: int) -> torch.Tensor:
        g = derived_generator(self.seed, epoch, 0xD47A)
        if self.index_order is not None:
            idx = self.index_order(epoch, g)
        elif self.shuffle:
            idx = torch.randperm(self.images.shape[0], generator=g)
        else:
            idx = torch.arange(self.images.shape[0])
        # Under torchrun every rank must take the same number of steps and rows, or a collective
        # waits forever: pad with the order's first indices (as DistributedSampler does), so each
        # sample is visited at least once and fewer than world_size are visited twice.
        pad = -idx.numel() % self.world_size
        return torch.cat([idx, idx[:pad]]) if pad else idx

    def order(self, epoch: int) -> torch.Tensor:
        """The indices this rank visits in ``epoch``, in visiting order."""
        return self._global_order(epoch)[self.rank::self.world_size]

    def epoch(self, epoch: int = 0, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Under torchrun every rank gathers and augments the whole global batch, with the random
        # draws a single process would make, and keeps its own rows: the ranks' batches together
        # are then exactly the single-process batch, augmentation included.
        full = self._global_order(epoch).to(self.device)
        global_batch = self.batch_size * self.world_size
        for step in range(start_step, -(-full.numel() // global_batch)):
            batch = full[step * global_batch:(step + 1) * global_batch]
            x = self._gather(batch).to(torch.float32).div_(255)
            if self.copy_augment is not None and self.copy_mask is not None:
                copies = self.copy_mask[batch]
                x[copies] = self.copy_augment(x[copies], derived_generator(self.seed, epoch, step, 0xC0B))
            if self.augment is not None:
                x = self.augment(x, derived_generator(self.seed, epoch, step, 0xA06))
            mine = slice(self.rank, None, self.world_size)
            yield self.normalize(x[mine]), self.labels[batch][mine]

    def _gather(self, batch: torch.Tensor) -> torch.Tensor:
        if isinstance(self.images, IndexedImages):
            return self.images[batch.cpu()].to(self.device, non_blocking=True)
        return self.images[batch]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)
