import torch

from longtail.data.augment import compose
from longtail.data.loader import BatchLoader


def _loader(n=103, bs=10, **kw):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    labels = torch.arange(n)
    return BatchLoader(images, labels, bs, mean=[0.0], std=[1.0], channels_last=False, **kw)


def test_each_sample_exactly_once_per_epoch():
    loader = _loader(shuffle=True, seed=1)
    for epoch in range(3):
        seen = torch.cat([y for _, y in loader.epoch(epoch)])
        assert sorted(seen.tolist()) == list(range(103))
    assert len(loader) == 11


def test_images_follow_labels_and_are_normalized():
    loader = _loader(shuffle=True, seed=1)
    for x, y in loader.epoch(0):
        assert torch.allclose(x[:, 0, 0, 0], y.float() / 255)


def test_order_differs_per_epoch_and_is_reproducible():
    a, b = _loader(shuffle=True, seed=7), _loader(shuffle=True, seed=7)
    assert torch.equal(a.order(0), b.order(0))
    assert not torch.equal(a.order(0), a.order(1))


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
    for (x, y), (x0, y0), (x1, y1) in zip(one.epoch(1), ranks[0].epoch(1), ranks[1].epoch(1)):
        assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
        assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)
