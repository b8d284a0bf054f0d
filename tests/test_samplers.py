"""Class-aware samplers: class probabilities against the formula, draws, plain-PyTorch use."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from longtail.errors import LongtailError
from longtail.data.samplers import ClassAwareSampler, ClassBalancedSampler, SquareRootSampler

LABELS = [0] * 100 + [1] * 25 + [2] * 4


def test_class_probabilities_follow_n_to_the_power_q():
    assert torch.allclose(ClassBalancedSampler(LABELS).class_probabilities(), torch.full((3,), 1 / 3, dtype=torch.double))
    # sqrt: 10 : 5 : 2 out of 17
    assert torch.allclose(SquareRootSampler(LABELS).class_probabilities(),
                          torch.tensor([10 / 17, 5 / 17, 2 / 17], dtype=torch.double))
    # q = 1 is instance sampling: the class shares of the data
    assert torch.allclose(ClassAwareSampler(LABELS, 1.0).class_probabilities(),
                          torch.tensor([100, 25, 4], dtype=torch.double) / 129)


def test_an_absent_class_is_never_drawn():
    sampler = ClassBalancedSampler([0, 0, 2, 2, 2])
    assert sampler.class_probabilities().tolist() == [0.5, 0.0, 0.5]


@pytest.mark.parametrize("sampler, expected", [(ClassBalancedSampler, [1 / 3] * 3), (SquareRootSampler, [10 / 17, 5 / 17, 2 / 17])])
def test_drawn_class_shares_match_within_four_standard_errors(sampler, expected):
    s = sampler(LABELS, num_samples=60_000)
    labels = torch.tensor(LABELS)
    share = torch.bincount(labels[s.draw(torch.Generator().manual_seed(0))], minlength=3).double() / 60_000
    for got, p in zip(share.tolist(), expected):
        assert abs(got - p) < 4 * math.sqrt(p * (1 - p) / 60_000)


def test_within_a_class_every_sample_is_drawn_alike():
    s = ClassBalancedSampler(LABELS, num_samples=40_000)
    hits = torch.bincount(s.draw(torch.Generator().manual_seed(1)), minlength=len(LABELS)).double()
    # class 2's four samples share a third of the draws: about 3,333 each
    assert (hits[125:] - 40_000 / 3 / 4).abs().max() < 4 * math.sqrt(40_000 / 12)


def test_works_in_a_plain_dataloader_with_set_epoch():
    x = torch.randn(len(LABELS), 2)
    y = torch.tensor(LABELS)
    sampler = SquareRootSampler(y, seed=7)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, sampler=sampler)
    first = torch.cat([b for _, b in loader])
    assert len(first) == len(LABELS) == len(sampler)
    again = torch.cat([b for _, b in loader])
    sampler.set_epoch(1)
    other = list(sampler)
    assert torch.equal(first, again)  # same (seed, epoch), same order
    assert other != list(SquareRootSampler(y, seed=7))  # a new epoch draws anew
    assert all(isinstance(i, int) for i in other)


def test_draws_depend_on_seed_and_epoch_and_repeat_for_the_same_pair():
    def draw(seed, epoch):
        sampler = ClassBalancedSampler(LABELS, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(7, 2) == draw(7, 2)
    assert draw(7, 0) != draw(7, 1)
    assert draw(7, 0) != draw(8, 0)
    assert draw(7, 1) != draw(8, 1)


def test_bad_input_is_an_error():
    with pytest.raises(LongtailError, match="at least one label"):
        ClassBalancedSampler([])
    with pytest.raises(LongtailError, match="non-negative"):
        ClassBalancedSampler([0, -1])
    with pytest.raises(LongtailError, match="num_samples must be positive"):
        ClassBalancedSampler([0, 1], num_samples=0)


def test_cycling_class_sampler_holds_exactly_equal_class_counts_per_epoch():
    from longtail.data.samplers import CyclingClassSampler

    labels = torch.tensor(LABELS)
    s = CyclingClassSampler(labels, seed=3)
    assert len(s) == 129  # 3 x ceil(129 / 3)
    for epoch in range(3):
        s.set_epoch(epoch)
        idx = torch.tensor(list(s))
        assert torch.bincount(labels[idx], minlength=3).tolist() == [43, 43, 43]
        # round-robin: each consecutive round of 3 visits every class once
        assert all(sorted(labels[idx[k:k + 3]].tolist()) == [0, 1, 2] for k in range(0, 129, 3))
        # class 1 (25 samples) cycles: its first 25 visits are all of its samples, once each
        ones = idx[labels[idx] == 1]
        assert sorted(ones[:25].tolist()) == list(range(100, 125))
        assert sorted(ones[25:].tolist()) == sorted(set(ones[25:].tolist()))  # the next cycle repeats none either
        # each round is a fresh permutation of the classes, not one fixed class order: with 43 rounds
        # of 3 classes a fixed order would show 1 distinct round, shuffled ones show all 6 orders
        rounds = {tuple(labels[idx[k:k + 3]].tolist()) for k in range(0, 129, 3)}
        assert len(rounds) == 6
    # an absent class is never visited; counts stay exact
    two = CyclingClassSampler([0, 0, 0, 2], num_samples=6)
    assert torch.bincount(torch.tensor([0, 0, 0, 2])[torch.tensor(list(two))], minlength=3).tolist() == [3, 0, 3]


def test_cycling_class_sampler_draws_depend_on_seed_and_epoch():
    from longtail.data.samplers import CyclingClassSampler

    def order(seed, epoch):
        s = CyclingClassSampler(LABELS, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(0, 0) == order(0, 0) and order(1, 2) == order(1, 2)
    assert order(0, 0) != order(0, 1) and order(0, 0) != order(1, 0)


def test_cycling_class_sampler_rejects_counts_that_cannot_be_equal():
    from longtail.data.samplers import CyclingClassSampler

    with pytest.raises(LongtailError, match="multiple of the 3 classes"):
        CyclingClassSampler(LABELS, num_samples=100)
