"""The batch loader: every sample once per epoch, normalization against a hand computation and
on real CIFAR-10, and random draws that depend on (seed, epoch, step) and on nothing else."""

import pytest
import torch

from longtail.data.augment import compose
from longtail.data.loader import BatchLoader, channel_stats
from longtail.seeding import derived_generator
from longtail.data.rebalance import random_copy_augment


def _loader(n=103, bs=10, mean=(0.0,), std=(1.0,), **kw):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    labels = torch.arange(n)
    return BatchLoader(images, labels, bs, mean=list(mean), std=list(std), channels_last=False, **kw)


def test_each_sample_exactly_once_per_epoch():
    loader = _loader(shuffle=True, seed=1)
    for epoch in range(3):
        seen = torch.cat([y for _, y in loader.epoch(epoch)])
        assert sorted(seen.tolist()) == list(range(103))
    assert len(loader) == 11


def test_images_follow_labels_and_are_normalized():
    # mean 0.2, std 0.5: with mean 0 and std 1 normalizing is the identity and proves nothing
    loader = _loader(shuffle=True, seed=1, mean=[0.2], std=[0.5])
    batches = list(loader.epoch(0))
    assert len(batches) == 11
    for x, y in batches:
        assert torch.allclose(x[:, 0, 0, 0], (y.float() / 255 - 0.2) / 0.5, atol=1e-6)


def test_normalize_matches_a_hand_computation():
    # one 1x2 image: channel 0 holds 0 and 255, channel 1 51 and 102, channel 2 255 and 153
    image = torch.tensor([[[[0, 255]], [[51, 102]], [[255, 153]]]], dtype=torch.uint8)
    loader = BatchLoader(image, torch.tensor([0]), 1, mean=[0.2, 0.4, 0.6], std=[0.5, 0.25, 0.1])
    x, _ = next(loader.epoch(0))
    # (v / 255 - mean) / std: (0 - .2) / .5, (1 - .2) / .5 | (.2 - .4) / .25, 0 | (1 - .6) / .1, 0
    want = torch.tensor([[[[-0.4, 1.6]], [[-0.8, 0.0]], [[4.0, 0.0]]]])
    assert torch.allclose(x, want, atol=1e-5)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_cifar_channel_stats_are_the_published_ones(cifar):
    # CIFAR-10's training-set mean and per-pixel std, as quoted with torchvision's examples:
    # (0.4914, 0.4822, 0.4465) and (0.2470, 0.2435, 0.2616); this JPEG copy is within 0.003
    mean, std = channel_stats(cifar.train_images)
    assert mean == pytest.approx([0.4914, 0.4822, 0.4465], abs=0.003)
    assert std == pytest.approx([0.2470, 0.2435, 0.2616], abs=0.003)


def test_normalized_real_batches_have_zero_mean_and_unit_std(cifar):
    """On 5,000 real training images: normalized with their own statistics, one big batch has
    per-channel mean 0 and std 1 to float precision; held-out test images and augmented batches
    come within 0.05. (Multiplying by std instead of dividing gives std about 0.06.)"""
    pick = torch.randperm(len(cifar.train_labels), generator=torch.Generator().manual_seed(0))[:5000]
    images, labels = cifar.train_images[pick], cifar.train_labels[pick]
    mean, std = channel_stats(images)

    def batch_stats(loader):
        x, _ = next(loader.epoch(0))
        x = x.transpose(0, 1).reshape(3, -1).double()
        return x.mean(dim=1), x.std(dim=1)

    m, s = batch_stats(BatchLoader(images, labels, 5000, mean=mean, std=std, shuffle=True, seed=0))
    assert m.abs().max() < 1e-4 and (s - 1).abs().max() < 1e-4
    held_out = torch.randperm(len(cifar.test_labels), generator=torch.Generator().manual_seed(1))[:4000]
    m, s = batch_stats(BatchLoader(cifar.test_images[held_out], cifar.test_labels[held_out], 4000, mean=mean, std=std))
    assert m.abs().max() < 0.05 and (s - 1).abs().max() < 0.05
    augmented = BatchLoader(images, labels, 4096, mean=mean, std=std, shuffle=True, seed=0,
                            augment=compose(["crop", "flip"]))
    m, s = batch_stats(augmented)
    assert m.abs().max() < 0.05 and (s - 1).abs().max() < 0.05


def test_order_differs_per_epoch_and_seed_and_is_reproducible():
    a, b = _loader(shuffle=True, seed=7), _loader(shuffle=True, seed=7)
    assert torch.equal(a.order(0), b.order(0)) and torch.equal(a.order(3), b.order(3))
    assert not torch.equal(a.order(0), a.order(1))
    assert not torch.equal(a.order(0), _loader(shuffle=True, seed=8).order(0))


def test_resuming_mid_epoch_gives_the_same_batches():
    loader = _loader(shuffle=True, seed=3, augment=compose(["flip"]))
    full = list(loader.epoch(2))
    tail = list(loader.epoch(2, start_step=4))
    assert len(tail) == len(full) - 4
    for (xa, ya), (xb, yb) in zip(full[4:], tail):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_ranks_partition_the_epoch():
    shards = [_loader(shuffle=True, seed=5, rank=r, world_size=3) for r in range(3)]
    seen = torch.cat([torch.cat([y for _, y in s.epoch(1)]) for s in shards])
    # 103 = 3 x 34 + 1: two indices are padded in so every rank takes 35 rows
    assert set(seen.tolist()) == set(range(103)) and len(seen) == 105


def test_ranks_take_equal_steps_and_rows_when_the_split_is_uneven():
    # 31 samples, 2 ranks, 15 per rank batch: without padding rank 1 would take one step fewer
    shards = [_loader(n=31, bs=15, shuffle=True, seed=5, rank=r, world_size=2) for r in range(2)]
    batches = [[y for _, y in s.epoch(0)] for s in shards]
    assert [len(b) for b in batches] == [2, 2] and len(shards[0]) == len(shards[1]) == 2
    assert [len(y) for y in batches[0]] == [len(y) for y in batches[1]]
    seen = torch.cat([torch.cat(b) for b in batches]).tolist()
    assert set(seen) == set(range(31)) and len(seen) == 32  # one sample padded in


def test_channel_stats_match_a_direct_computation():
    from longtail.data.loader import channel_stats

    images = torch.randint(0, 256, (50, 3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(images, chunk=7)
    x = images.double().div(255).transpose(0, 1).reshape(3, -1)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), x.mean(1), atol=1e-12)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), x.std(1), atol=1e-9)


def test_ranks_together_make_the_single_process_batches_augmentation_included():
    one = _loader(n=102, shuffle=True, seed=5, augment=compose(["flip", "brightness"]), bs=12)
    ranks = [_loader(n=102, shuffle=True, seed=5, augment=compose(["flip", "brightness"]), bs=6, rank=r, world_size=2)
             for r in range(2)]
    steps = 0
    for (x, y), (x0, y0), (x1, y1) in zip(one.epoch(1), ranks[0].epoch(1), ranks[1].epoch(1)):
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)
        steps += 1
    assert steps == len(one) == 9  # zip stops at the shortest: an empty epoch must not pass


def test_derived_generators_differ_in_every_key_and_repeat_for_the_same_keys():
    def draw(*keys):
        return torch.rand(16, generator=derived_generator(*keys))

    base = draw(3, 1, 2, 0xA06)
    assert torch.equal(base, draw(3, 1, 2, 0xA06))
    for other in [(4, 1, 2, 0xA06), (3, 2, 2, 0xA06), (3, 1, 3, 0xA06), (3, 1, 2, 0xC0B), (3, 1, 2), (3, 2, 1, 0xA06)]:
        assert not torch.equal(base, draw(*other)), other


def _same_image_loader(seed, **kw):
    """40 copies of one random 3x8x8 image, in batches of 10, no shuffling: every batch gets the
    same input, so any difference between batches is a difference in the random draws."""
    image = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return BatchLoader(image.expand(40, 3, 8, 8).contiguous(), torch.zeros(40, dtype=torch.long), 10,
                       mean=[0.5] * 3, std=[0.25] * 3, channels_last=False, seed=seed, **kw)


AUGMENTED = {
    "augment": dict(augment=compose(["crop", "flip", "brightness"])),
    "copy_augment": dict(copy_mask=torch.ones(40, dtype=torch.bool), copy_augment=random_copy_augment),
}


@pytest.mark.parametrize("kind", sorted(AUGMENTED))
def test_batch_augmentation_draws_anew_per_step_epoch_and_seed(kind):
    def batches(seed, epoch):
        return [x for x, _ in _same_image_loader(seed, **AUGMENTED[kind]).epoch(epoch)]

    first = batches(1, 0)
    assert len(first) == 4
    plain = next(_same_image_loader(1).epoch(0))[0]
    for x in first:
        # within a batch each image gets its own draw, and most of them change the image
        assert len({tuple(row.flatten().tolist()) for row in x}) >= 8
        assert sum(not torch.allclose(row, plain[0]) for row in x) >= 8
    # the four batches of one epoch all differ from each other ...
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(first[i], first[j]), (i, j)
    # ... from the same step of the next epoch and of another seed, and repeat exactly
    for other in (batches(1, 1), batches(2, 0)):
        assert all(not torch.allclose(a, b) for a, b in zip(first, other))
    assert all(torch.equal(a, b) for a, b in zip(first, batches(1, 0)))
    resumed = [x for x, _ in _same_image_loader(1, **AUGMENTED[kind]).epoch(0, start_step=2)]
    assert all(torch.equal(a, b) for a, b in zip(first[2:], resumed)) and len(resumed) == 2


# --- splits as views of a memory-mapped source ------------------------------------------------------


def _mapped_and_in_memory(tmp_path):
    from longtail.data.sources import ImageDataset, load_dataset
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "tree", classes=4, per_class=30, test_per_class=5)
    mapped = load_dataset(str(root), cache_dir=tmp_path / "cache")
    copy = ImageDataset(mapped.name, mapped.classes, mapped.train_images.clone(), mapped.train_labels,
                        mapped.test_images.clone(), mapped.test_labels, mapped.fingerprint)
    return mapped, copy


@pytest.mark.parametrize("rebalance", ["none", "copy", "aug", "copy-aug", "class-balanced"])
def test_batches_gathered_from_the_mapped_cache_equal_the_in_memory_ones(tmp_path, rebalance):
    from longtail.config import TrainConfig
    from longtail.data.prepare import prepare_data
    from longtail.data.views import IndexedImages

    mapped, copy = _mapped_and_in_memory(tmp_path)
    cfg = TrainConfig(imbalance="step:5", rebalance=rebalance, val_size=12, limit_test=10, seed=3)
    views, old = prepare_data(cfg, mapped), prepare_data(cfg, copy)
    # every split is an index into the mapped file; only aug adds a part, its minority copies
    for images in (views.train_images, views.val_images, views.test_images):
        assert isinstance(images, IndexedImages) and images.parts[0].data_ptr() in (
            mapped.train_images.data_ptr(), mapped.test_images.data_ptr())
    minority = sum(n for n in views.kept_counts if n < max(views.kept_counts) / 2)
    assert [p.shape[0] for p in views.train_images.parts[1:]] == ([4 * minority] if rebalance == "aug" else [])
    assert channel_stats(views.train_images) == channel_stats(old.train_images.materialize())
    mean, std = channel_stats(old.train_images)
    for split in ("train", "val", "test"):
        kw = dict(shuffle=split == "train", seed=1, augment=compose(["crop", "flip"]) if split == "train" else None,
                  index_order=views.index_order if split == "train" else None,
                  copy_mask=views.copy_mask if split == "train" else None, copy_augment=views.copy_augment)
        a = BatchLoader(getattr(views, f"{split}_images"), getattr(views, f"{split}_labels"), 16, mean=mean, std=std, **kw)
        b = BatchLoader(getattr(old, f"{split}_images").materialize(), getattr(old, f"{split}_labels"), 16, mean=mean,
                        std=std, **kw)
        pairs = list(zip(a.epoch(1), b.epoch(1)))
        assert len(pairs) == len(b) > 0
        assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in pairs)


def test_channel_stats_do_not_depend_on_the_chunking():
    images = torch.randint(0, 256, (40, 3, 9, 9), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    assert channel_stats(images, chunk=3) == channel_stats(images, chunk=40) == channel_stats(images, chunk=1)


def test_evaluation_batches_shrink_with_the_image_area():
    from longtail.data.loader import eval_batch_size

    # CIFAR's 1,024 images of 32x32 (what every recorded figure used); the same pixels per batch above
    assert [eval_batch_size(32, 32), eval_batch_size(64, 64), eval_batch_size(128, 128), eval_batch_size(16, 16)] \
        == [1024, 256, 64, 4096]
    assert eval_batch_size(4096, 4096) == 16  # never fewer than 16
