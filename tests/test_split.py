import torch

from longtail.data.split import stratified_take, train_val_split


def test_val_split_is_stratified_disjoint_and_seeded():
    labels = torch.arange(10).repeat_interleave(100)
    train, val = train_val_split(labels, 100, 10, seed=3)
    assert torch.bincount(labels[val], minlength=10).tolist() == [10] * 10
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert len(train) + len(val) == 1000
    again, _ = train_val_split(labels, 100, 10, seed=3)
    other, _ = train_val_split(labels, 100, 10, seed=4)
    assert torch.equal(train, again) and not torch.equal(train, other)


def test_stratified_take_rounds_to_exact_total():
    labels = torch.tensor([0] * 7 + [1] * 3 + [2] * 1)
    idx = stratified_take(labels, 5, 3, torch.Generator().manual_seed(0))
    assert len(idx) == 5
    # exact shares 3.18, 1.36, 0.45 -> floors 3, 1, 0; the 2 leftovers go to the largest remainders (2, 1)
    assert torch.bincount(labels[idx], minlength=3).tolist() == [3, 1, 1]
