"""Class-aware samplers for long-tailed training sets, as plain ``torch.utils.data.Sampler``s.

Each epoch draws ``num_samples`` indices with replacement so that class j is picked with
probability proportional to n_j^q (n_j: its number of samples), then a sample uniformly within
the class. q = 0 is class-balanced sampling, q = 1/2 square-root sampling (Mahajan et al. 2018;
Kang et al. 2020, "Decoupling representation and classifier"), q = 1 plain instance sampling.

They work in any PyTorch code::

    sampler = ClassBalancedSampler(train_labels, seed=0)
    loader = DataLoader(dataset, batch_size=128, sampler=sampler)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)  # a fresh draw per epoch, reproducible from (seed, epoch)
        for x, y in loader: ...

:class:`CyclingClassSampler` is Kang et al.'s "class-aware sampler": not random class draws but a
round-robin over the classes, so every epoch holds exactly equal class counts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from longtail.seeding import derived_generator
from longtail.errors import LongtailError


class EpochSampler(Sampler[int], ABC):
    """A sampler whose epoch ``e`` is drawn afresh from (seed, e) alone, so a run can resume in
    the middle of training with the orders it would have had. Subclasses define ``draw``."""

    seed: int = 0
    epoch: int = 0
    num_samples: int

    @abstractmethod
    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """One epoch's indices, drawn from ``generator`` alone."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(self.draw(derived_generator(self.seed, self.epoch, 0x5A)).tolist())

    def __len__(self) -> int:
        return self.num_samples


class ClassAwareSampler(EpochSampler):
    """Samples with replacement, class j with probability n_j^power / sum_k n_k^power."""

    def __init__(self, labels: Sequence[int] | torch.Tensor, power: float, num_samples: int | None = None,
                 seed: int = 0):
        self.labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        if self.labels.numel() == 0:
            raise LongtailError("a class-aware sampler needs at least one label")
        if (self.labels < 0).any():
            raise LongtailError("class labels must be non-negative integers")
        if num_samples is not None and num_samples <= 0:
            raise LongtailError(f"num_samples must be positive, got {num_samples}")
        self.power = float(power)
        self.num_samples = int(num_samples) if num_samples is not None else int(self.labels.numel())
        self.seed = seed
        self.epoch = 0
        counts = torch.bincount(self.labels).double()
        self.class_counts = counts
        # Per-sample weight p_j / n_j: picking class j, then one of its n_j samples uniformly.
        self.sample_weights = (self.class_probabilities() / counts.clamp_min(1))[self.labels]

    def class_probabilities(self) -> torch.Tensor:
        """Probability of drawing each class (0 for classes absent from ``labels``)."""
        present = self.class_counts > 0
        mass = torch.where(present, self.class_counts.clamp_min(1) ** self.power, torch.zeros_like(self.class_counts))
        return mass / mass.sum()

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """One epoch's indices."""
        return torch.multinomial(self.sample_weights, self.num_samples, replacement=True, generator=generator)



class ClassBalancedSampler(ClassAwareSampler):
    """Every class equally likely per draw (q = 0)."""

    def __init__(self, labels: Sequence[int] | torch.Tensor, num_samples: int | None = None, seed: int = 0):
        super().__init__(labels, 0.0, num_samples, seed)


class SquareRootSampler(ClassAwareSampler):
    """Class j drawn with probability proportional to sqrt(n_j) (q = 1/2)."""

    def __init__(self, labels: Sequence[int] | torch.Tensor, num_samples: int | None = None, seed: int = 0):
        super().__init__(labels, 0.5, num_samples, seed)


class CyclingClassSampler(EpochSampler):
    """The "class-aware sampler" of Kang et al. 2020 (Decoupling; from Shen et al. 2016): every epoch
    holds exactly equal class counts.

    Classes are visited round-robin: the epoch is a run of shuffled class orders (a fresh
    permutation of the classes each round), and each visit to class j takes the next sample of
    class j's own cycle (its samples in a shuffled order, reshuffled whenever the cycle wraps), so
    within an epoch no sample of a class repeats before all of that class's samples were drawn.

    Unlike the authors' iterators, which carry their position over from epoch to epoch, every
    epoch here is drawn afresh from its generator: the order of epoch e depends on (seed, e) only,
    which is what resuming mid-run needs. ``num_samples`` defaults to the smallest multiple of the
    number of classes that is at least the number of samples (the epoch size of the other
    samplers); the authors' code uses C x the largest class count. It must be a multiple of the
    number of classes present, or the counts could not be equal.
    """

    def __init__(self, labels: Sequence[int] | torch.Tensor, num_samples: int | None = None, seed: int = 0):
        self.labels = torch.as_tensor(labels, dtype=torch.long).flatten()
        if self.labels.numel() == 0:
            raise LongtailError("a class-aware sampler needs at least one label")
        if (self.labels < 0).any():
            raise LongtailError("class labels must be non-negative integers")
        counts = torch.bincount(self.labels)
        self.classes = torch.nonzero(counts).flatten()  # classes absent from the labels are never visited
        c = self.classes.numel()
        if num_samples is None:
            num_samples = -(-self.labels.numel() // c) * c
        if num_samples <= 0 or num_samples % c:
            raise LongtailError(f"num_samples must be a positive multiple of the {c} classes present, got {num_samples}")
        self.num_samples = int(num_samples)
        # each class's sample positions, in label order
        self.members = [torch.nonzero(self.labels == j).flatten() for j in self.classes.tolist()]
        self.seed = seed
        self.epoch = 0

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """One epoch's indices: num_samples / C rounds of a shuffled class order."""
        c = self.classes.numel()
        rounds = self.num_samples // c
        # slot k of the epoch visits class slot_class[k]: each round a fresh permutation of the classes
        slot_class = torch.argsort(torch.rand(rounds, c, generator=generator), dim=1).flatten()
        out = torch.empty(self.num_samples, dtype=torch.long)
        for j, members in enumerate(self.members):
            n = members.numel()
            cycles = -(-rounds // n)
            # concatenated permutations of the class's samples: the cycle reshuffled at each wrap
            stream = members[torch.argsort(torch.rand(cycles, n, generator=generator), dim=1).flatten()[:rounds]]
            out[slot_class == j] = stream  # the k-th visit to class j takes the k-th sample of its cycle
        return out

