"""Rebalancers: class counts after copy/aug, each augmented copy as its operation says, samplers."""

from __future__ import annotations

import pytest
import torch

from longtail.data.loader import BatchLoader
from longtail.data.rebalance import (FIXED_OPS, fixed_augmented_copies, rebalance, replication_factors)
from longtail.errors import LongtailError

SEED_COUNTS = [45, 45, 450, 450]  # the seed's step:10 shape, minority 0-1, majority 2-3


def _data(counts=SEED_COUNTS, size=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(counts)).repeat_interleave(torch.tensor(counts))
    images = torch.randint(0, 256, (labels.numel(), 3, size, size), generator=g, dtype=torch.uint8)
    return images, labels


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_copy_replicates_minority_to_the_majority_mean():
    images, labels = _data()
    rb = rebalance("copy", images, labels, 4, _g())
    assert torch.bincount(rb.labels).tolist() == [450, 450, 450, 450]
    # the seed: each minority image appears 10 times (9 extra copies), majority images once
    times = torch.bincount(rb.source, minlength=labels.numel())
    assert set(times[labels < 2].tolist()) == {10} and set(times[labels >= 2].tolist()) == {1}
    assert torch.equal(rb.images, images[rb.source]) and torch.equal(rb.labels, labels[rb.source])
    assert torch.equal(rb.images[:labels.numel()], images)  # the originals first, in order


def test_replication_rounds_to_whole_copies():
    # majority mean (400 + 500) / 2 = 450; 450 / 100 = 4.5 rounds to 4 (half to even), 450 / 30 = 15
    assert replication_factors([100, 30, 400, 500]) == [4, 15, 1, 1]
    assert replication_factors([100, 30, 400, 500], set_size=5) == [1, 3, 1, 1]


def test_aug_is_five_variants_copied_once_more():
    images, labels = _data()
    rb = rebalance("aug", images, labels, 4, _g())
    # 45 originals + 4 x 45 augmented = 225, copied once more: 450 (the seed's 10x)
    assert torch.bincount(rb.labels).tolist() == [450, 450, 450, 450]
    times = torch.bincount(rb.source, minlength=labels.numel())
    assert set(times[labels < 2].tolist()) == {10} and set(times[labels >= 2].tolist()) == {1}


def test_aug_only_adds_the_four_copies_and_nothing_more():
    images, labels = _data()
    rb = rebalance("aug-only", images, labels, 4, _g())
    assert torch.bincount(rb.labels).tolist() == [225, 225, 450, 450]


def test_aug_copies_of_one_image_are_its_flips_and_two_colour_changes():
    images, labels = _data()
    rb = rebalance("aug", images, labels, 4, _g())
    src = images[0]
    variants = rb.images[rb.source == 0]
    assert len(variants) == 10
    for expected in (src, src.flip(-1), src.flip(-2)):
        assert sum(bool(torch.equal(v, expected)) for v in variants) == 2
    # the other two pairs are the brightness and contrast copies: not a flip of the source
    others = [v for v in variants if not any(torch.equal(v, e) for e in (src, src.flip(-1), src.flip(-2)))]
    assert len(others) == 4


def test_a_flipped_copy_flipped_back_is_its_source():
    images, _ = _data([3, 3])
    ones = torch.ones(len(images))
    copies = fixed_augmented_copies(images, ones * 1.3, ones * 0.7).view(len(FIXED_OPS), *images.shape)
    hflip, vflip, _, _ = copies
    assert torch.equal(hflip.flip(-1), images) and torch.equal(vflip.flip(-2), images)
    assert not torch.equal(hflip, images) and not torch.equal(vflip, images)


def test_brightness_and_contrast_copies_follow_their_formulas():
    images, _ = _data([4, 4])
    b = torch.tensor([0.7, 1.3, 0.65, 1.4, 0.8, 1.2, 0.75, 1.35])
    c = torch.tensor([1.3, 0.7, 1.25, 0.6, 1.4, 0.75, 0.8, 1.2])
    _, _, bright, contrast = fixed_augmented_copies(images, b, c).view(4, *images.shape)
    x = images.double()
    # brightness: clip(f * x, 0, 255)
    want_b = (x * b.double().view(-1, 1, 1, 1)).clamp(0, 255)
    assert (bright.double() - want_b).abs().max() <= 0.5 + 1e-3  # rounded to the nearest level (float32)
    # contrast: clip(f * x + (1 - f) * mean grey, 0, 255), grey = 0.299 R + 0.587 G + 0.114 B
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2)).view(-1, 1, 1, 1)
    f = c.double().view(-1, 1, 1, 1)
    want_c = (f * x + (1 - f) * grey).clamp(0, 255)
    assert (contrast.double() - want_c).abs().max() <= 1.0


def test_fixed_copies_change_brightness_and_contrast_visibly():
    images, labels = _data()
    rb = rebalance("aug-only", images, labels, 4, _g())
    extra = rb.images[labels.numel():].view(4, -1, *images.shape[1:])  # op-major after the originals
    sources = images[rb.source[labels.numel():].view(4, -1)[0]]
    ratio = extra[2].double().mean(dim=(1, 2, 3)) / sources.double().mean(dim=(1, 2, 3))
    assert ((ratio - 1).abs() > 0.1).all()  # factors are 1 +- (0.2 to 0.4), clipping eats a little


@pytest.mark.parametrize("name", ["aug", "aug-only"])
def test_aug_copies_repeat_for_one_generator_seed_and_change_with_another(name):
    images, labels = _data()
    a = rebalance(name, images, labels, 4, _g(5))
    b = rebalance(name, images, labels, 4, _g(5))
    c = rebalance(name, images, labels, 4, _g(6))
    assert torch.equal(a.images, b.images) and torch.equal(a.source, b.source)
    assert torch.equal(a.source, c.source)  # which images are copied does not depend on the draw
    n, m = labels.numel(), 90  # 90 minority images, four copies each, op-major after the originals
    ops_a, ops_c = (r.images[n:n + 4 * m].view(4, m, *images.shape[1:]) for r in (a, c))
    assert torch.equal(ops_a[0], ops_c[0]) and torch.equal(ops_a[1], ops_c[1])  # the flips are fixed
    for op in (2, 3):  # brightness, contrast: factors drawn from the generator, per image
        differ = (ops_a[op] != ops_c[op]).flatten(1).any(1)
        assert differ.double().mean() > 0.9, FIXED_OPS[op]
    assert not torch.equal(a.images, c.images)


def test_the_brightness_and_contrast_factors_are_drawn_per_image_and_op():
    # pixels in 50..150: no factor in 1 +- 0.4 clips them, so the copies show their factors exactly
    # (brightness: the ratio of means; contrast: the ratio of standard deviations)
    _, labels = _data()
    images = torch.randint(50, 151, (labels.numel(), 3, 6, 6), generator=_g(2), dtype=torch.uint8)
    rb = rebalance("aug-only", images, labels, 4, _g(1))
    n, m = labels.numel(), 90
    extra = rb.images[n:].view(4, m, *images.shape[1:]).double()
    sources = images[rb.source[n:n + m]].double()
    bright = extra[2].mean(dim=(1, 2, 3)) / sources.mean(dim=(1, 2, 3))
    contrast = extra[3].std(dim=(1, 2, 3)) / sources.std(dim=(1, 2, 3))
    for factor in (bright, contrast):
        # 1 +- U(0.2, 0.4) (FACTOR_RANGE), up to the rounding of the copies to whole levels
        assert ((factor - 1).abs() > 0.19).all() and ((factor - 1).abs() < 0.41).all()
        assert 30 < (factor > 1).sum() < 60  # darker and lighter about equally often
        assert len(set(factor.round(decimals=4).tolist())) > 80  # one factor per image
    assert ((bright - contrast).abs() > 0.01).double().mean() > 0.9  # and one per op


def _imbalanced_real(cifar, counts=(30, 120, 120)):
    """The first ``counts[j]`` CIFAR-10 training images of classes 0, 1, 2 as a dataset, with a
    small test split: imbalanced as it stands, so no imbalance profile (and no seed) picks samples."""
    from longtail.data.sources import ImageDataset

    take = torch.cat([torch.nonzero(cifar.train_labels == j).flatten()[:n] for j, n in enumerate(counts)])
    test = torch.cat([torch.nonzero(cifar.test_labels == j).flatten()[:10] for j in range(len(counts))])
    return ImageDataset("cifar-subset", cifar.classes[:len(counts)], cifar.train_images[take], cifar.train_labels[take],
                        cifar.test_images[test], cifar.test_labels[test], "0" * 64)


@pytest.mark.parametrize("method", ["aug", "aug-only"])
def test_fixed_augmented_copies_change_with_the_runs_seed(cifar, method):
    """Through prepare_data, as a run makes them: the same seed gives the same training set, another
    seed other brightness and contrast copies of the same real images (and the same flips)."""
    from longtail.config import TrainConfig
    from longtail.data.prepare import prepare_data

    ds = _imbalanced_real(cifar)
    runs = {seed: prepare_data(TrainConfig(rebalance=method, val_size=30, seed=seed), ds) for seed in (0, 1)}
    again = prepare_data(TrainConfig(rebalance=method, val_size=30, seed=0), ds)
    assert torch.equal(runs[0].train_images, again.train_images)
    assert torch.equal(runs[0].train_labels, runs[1].train_labels)
    # a stratified validation split of 30 takes 3, 13 and 14 (in some order of the two large classes)
    assert runs[0].kept_counts == runs[1].kept_counts and runs[0].kept_counts[0] == 27
    # the originals come first, then the four copies of the 27 minority images, op-major
    n, m = sum(runs[0].kept_counts), 27
    a, b = (r.train_images[n:n + 4 * m].view(4, m, 3, 32, 32) for r in (runs[0], runs[1]))
    assert torch.equal(a[:2], b[:2])
    for op in (2, 3):
        assert (a[op] != b[op]).flatten(1).any(1).all(), FIXED_OPS[op]


def test_copy_aug_marks_only_copies_and_the_loader_augments_only_those():
    images, labels = _data([6, 60])
    rb = rebalance("copy-aug", images, labels, 2, _g())
    assert torch.bincount(rb.labels).tolist() == [60, 60]
    assert rb.copy_mask.sum() == 54 and not rb.copy_mask[:labels.numel()].any()
    loader = BatchLoader(rb.images, rb.labels, 200, mean=[0, 0, 0], std=[1, 1, 1], channels_last=False,
                         copy_mask=rb.copy_mask, copy_augment=rb.copy_augment)
    (x0, _), (x1, _) = next(loader.epoch(0)), next(loader.epoch(1))
    plain = rb.images.float() / 255
    assert torch.allclose(x0[~rb.copy_mask], plain[~rb.copy_mask])
    changed = (x0[rb.copy_mask] - plain[rb.copy_mask]).abs().flatten(1).amax(1) > 1e-6
    assert changed.float().mean() > 0.9
    assert not torch.allclose(x0[rb.copy_mask], x1[rb.copy_mask])  # fresh each epoch


@pytest.mark.parametrize("name", ["class-balanced", "sqrt"])
def test_sampler_orders_draw_anew_per_epoch_and_seed(name):
    images, labels = _data([10, 90])
    rb = rebalance(name, images, labels, 2, _g())

    def loader(seed):
        return BatchLoader(rb.images, rb.labels, 25, mean=[0.5] * 3, std=[0.25] * 3, seed=seed,
                           index_order=rb.index_order)

    a = loader(3)
    assert torch.equal(a.order(0), loader(3).order(0)) and torch.equal(a.order(2), loader(3).order(2))
    assert not torch.equal(a.order(0), a.order(1))
    assert not torch.equal(a.order(0), loader(4).order(0))
    # the batches are the drawn samples, in the drawn order
    y = torch.cat([y for _, y in a.epoch(1)])
    assert torch.equal(y, labels[a.order(1)])


@pytest.mark.parametrize("name, expected", [("class-balanced", [0.5, 0.5]), ("sqrt", [1 / 4, 3 / 4])])
def test_samplers_draw_classes_in_their_proportions(name, expected):
    images, labels = _data([10, 90])  # sqrt: sqrt(10) : sqrt(90) = 1 : 3
    rb = rebalance(name, images, labels, 2, _g())
    assert torch.equal(rb.images, images)
    draws = torch.cat([rb.index_order(e, _g(e)) for e in range(100)])
    assert len(draws) == 100 * labels.numel()
    share = torch.bincount(labels[draws], minlength=2).double() / len(draws)
    assert torch.allclose(share, torch.tensor(expected, dtype=torch.double), atol=0.01)


def test_balanced_data_are_left_alone():
    images, labels = _data([50, 50])
    for name in ("copy", "aug", "aug-only", "copy-aug"):
        assert torch.bincount(rebalance(name, images, labels, 2, _g()).labels).tolist() == [50, 50]


def test_unknown_method_is_an_error():
    images, labels = _data()
    with pytest.raises(LongtailError, match="unknown rebalance method 'smote'"):
        rebalance("smote", images, labels, 4, _g())


def test_class_aware_rebalance_gives_every_epoch_equal_class_counts():
    images, labels = _data()
    rb = rebalance("class-aware", images, labels, 4, _g())
    assert torch.equal(rb.images, images)  # a sampler: the data stay as they are
    c = torch.bincount(labels, minlength=4)
    size = -(-labels.numel() // 4) * 4
    for epoch in (0, 1):
        idx = rb.index_order(epoch, _g(10 + epoch))
        assert torch.bincount(labels[idx], minlength=4).tolist() == [size // 4] * 4, c
    assert torch.equal(rb.index_order(0, _g(10)), rb.index_order(0, _g(10)))
    assert not torch.equal(rb.index_order(0, _g(10)), rb.index_order(0, _g(11)))


def _orders(rb, n_epochs, seed=4, batch=32):
    loader = BatchLoader(rb.images, rb.labels, batch, mean=[0.5] * 3, std=[0.25] * 3, shuffle=True, seed=seed,
                         index_order=rb.index_order)
    return [loader.order(e) for e in range(n_epochs)], loader


@pytest.mark.parametrize("name", ["copy", "copy-aug", "aug", "class-balanced", "class-aware"])
def test_deferred_resampling_changes_nothing_before_its_epoch(name):
    from longtail.data.rebalance import deferred

    images, labels = _data()
    plain, _ = _orders(rebalance("none", images, labels, 4, _g()), 4)
    rb = rebalance(name, images, labels, 4, _g())
    full, _ = _orders(rb, 4)
    drs, loader = _orders(deferred(rb, labels.numel(), 2), 4)
    for e in (0, 1):  # exactly the plain run's orders: the originals only, shuffled as a plain run shuffles
        assert torch.equal(drs[e], plain[e])
    for e in (2, 3):  # then exactly the rebalancer's own
        assert torch.equal(drs[e], full[e])
    # a copy-type rebalancer's epochs grow at the switch; the loader's steps follow each epoch's order
    assert [loader.steps_in(e) for e in range(4)] == [-(-o.numel() // 32) for o in drs]
    assert loader.total_steps(4) == sum(loader.steps_in(e) for e in range(4))
    assert sum(1 for _ in loader.epoch(1)) == loader.steps_in(1)
    assert sum(1 for _ in loader.epoch(2)) == loader.steps_in(2)
    assert deferred(rb, labels.numel(), 0) is rb  # 0: from the start


def test_deferred_resampling_past_the_runs_end_is_one_line(tiny_folder, tmp_path, capsys):
    from longtail.cli import main

    root = tiny_folder(tmp_path / "d", classes=3, per_class=8)
    for extra, message in ((["--rebalance", "class-aware", "--rebalance-from-epoch", "3"], "never apply"),
                           (["--rebalance-from-epoch", "1"], "--rebalance is none")):
        rc = main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "3", "--quiet", *extra])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and message in err, err
