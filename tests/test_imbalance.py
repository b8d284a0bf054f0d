"""Imbalance profiles: kept counts against hand-computed lists, the kept draw, bad specs."""

from __future__ import annotations

import pytest
import torch

from longtail.cli import main
from longtail.config import TrainConfig
from longtail.data.imbalance import apply_profile, minority_classes, profile_counts
from longtail.data.sources import ImageDataset
from longtail.errors import LongtailError
from longtail.data.prepare import prepare_data

# Cao et al. 2019's CIFAR-10-LT training counts (n_max = 5000), floor(5000 * ratio^(-j/9)).
CIFAR10_LT_100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
CIFAR10_LT_10 = [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]


def test_step_ratio_10_keeps_a_tenth_of_the_first_five_classes():
    assert profile_counts("step:10", [4500] * 10) == [450] * 5 + [4500] * 5
    # 4499 / 10 = 449.9 keeps 449: the count is floored
    assert profile_counts("step:10", [4499, 4500, 10, 4500]) == [449, 450, 10, 4500]  # first half: 0, 1


def test_step_minority_classes_are_configurable():
    assert profile_counts("step:10:5-9", [4500] * 10) == [4500] * 5 + [450] * 5
    assert profile_counts("step:4:0,2", [100, 100, 100]) == [25, 100, 25]
    assert profile_counts("step", [100, 100]) == [10, 100]  # ratio 10 by default


def test_exponential_counts_match_cao_et_al():
    assert profile_counts("exponential:100", [5000] * 10) == CIFAR10_LT_100
    assert profile_counts("exponential:10", [5000] * 10) == CIFAR10_LT_10
    # 4,500 per class after our validation split: floor(4500 * 100^(-j/9))
    assert profile_counts("exponential:100", [4500] * 10) == [4500, 2697, 1617, 969, 581, 348, 208, 125, 75, 45]


def test_exponential_never_asks_more_than_a_class_has():
    assert profile_counts("exponential:4", [100, 10, 100]) == [100, 10, 25]


def test_none_profile_keeps_every_sample():
    assert profile_counts("none", [10, 7, 3]) == [10, 7, 3]
    labels = torch.tensor([0, 1, 1, 2, 0])
    assert apply_profile(labels, "none", 3, torch.Generator().manual_seed(0)).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(LongtailError, match="takes no arguments"):
        profile_counts("none:5", [10, 10])


def test_counts_profile_is_taken_as_given():
    assert profile_counts("counts:5,0003,1", [10, 10, 10]) == [5, 3, 1]


@pytest.mark.parametrize("spec, message", [
    ("step:1", "greater than 1"),
    ("exponential:0.5", "greater than 1"),
    ("step:abc", "must be a number"),
    ("step:10:7", "between 0 and 2"),
    ("exponential:10:2", "only a ratio"),
    ("counts:5,20,1", "class 1 has only 10"),
    ("counts:5,5", "gives 2 counts"),
    ("counts:5,-1,5", "negative"),
    ("counts:5,0,5", "leaves class 1 with no samples"),
    ("zipf:2", "unknown imbalance profile"),
])
def test_bad_profiles_are_one_line_errors(spec, message):
    with pytest.raises(LongtailError, match=message) as info:
        profile_counts(spec, [10, 10, 10])
    assert "\n" not in str(info.value)


def test_apply_profile_keeps_the_counts_seeded():
    labels = torch.arange(4).repeat_interleave(50)
    kept = apply_profile(labels, "counts:50,20,5,1", 4, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[kept], minlength=4).tolist() == [50, 20, 5, 1]
    again = apply_profile(labels, "counts:50,20,5,1", 4, torch.Generator().manual_seed(0))
    other = apply_profile(labels, "counts:50,20,5,1", 4, torch.Generator().manual_seed(1))
    assert torch.equal(kept, again) and not torch.equal(kept, other)
    assert torch.equal(kept, torch.unique(kept))  # sorted, no repeats


def test_minority_classes_are_those_below_half_the_largest():
    assert minority_classes([450] * 5 + [4500] * 5) == [0, 1, 2, 3, 4]
    assert minority_classes(CIFAR10_LT_10) == [3, 4, 5, 6, 7, 8, 9]  # below 5000 / 2 = 2500: from 2320 on
    assert minority_classes([10, 10]) == []
    # "below half" is strict: exactly half of the largest is a majority class
    assert minority_classes([50, 100, 49]) == [2]


def _unique_image_dataset(per_class: int = 40, classes: int = 4) -> ImageDataset:
    """Every training image carries its own index in its pixels, so images identify samples."""
    n = per_class * classes
    idx = torch.arange(n)
    images = torch.stack([idx % 256, idx // 256, torch.zeros_like(idx)], 1).to(torch.uint8)[:, :, None, None]
    images = images.expand(n, 3, 4, 4).contiguous()
    labels = idx % classes
    return ImageDataset("unique", [f"c{j}" for j in range(classes)], images, labels, images[:8], labels[:8], "f" * 64)


def test_kept_set_is_disjoint_from_the_balanced_validation_split():
    ds = _unique_image_dataset()
    data = prepare_data(TrainConfig(imbalance="step:4", val_size=40, seed=3), ds)
    code = lambda x: (x[:, 0, 0, 0].long() + 256 * x[:, 1, 0, 0].long()).tolist()  # noqa: E731
    assert not set(code(data.train_images)) & set(code(data.val_images))
    assert torch.bincount(data.val_labels).tolist() == [10, 10, 10, 10]
    assert data.kept_counts == [7, 7, 30, 30]  # 30 per class after validation, floor(30 / 4) = 7
    assert len(data.kept_hash) == 16


def test_the_kept_samples_depend_on_the_runs_seed_alone():
    """prepare_data draws the kept samples from the run's seed: the same seed keeps the same ones,
    another seed other ones (in the same numbers), from the same validation split."""
    ds = _unique_image_dataset()
    code = lambda x: sorted((x[:, 0, 0, 0].long() + 256 * x[:, 1, 0, 0].long()).tolist())  # noqa: E731
    a, again, other = (prepare_data(TrainConfig(imbalance="step:4", val_size=40, seed=s), ds) for s in (3, 3, 4))
    assert a.kept_hash == again.kept_hash and torch.equal(a.train_images, again.train_images)
    assert a.kept_hash != other.kept_hash and code(a.train_images) != code(other.train_images)
    assert a.kept_counts == other.kept_counts == [7, 7, 30, 30]
    assert torch.equal(a.val_images, other.val_images)  # the split follows split_seed, not seed
    # the majority classes keep everything; the minority classes keep other samples
    majority = lambda d: code(d.train_images[d.train_labels >= 2])  # noqa: E731
    assert majority(a) == majority(other)


def test_data_info_prints_the_kept_counts(tiny_folder, tmp_path, capsys):
    root = tiny_folder(tmp_path / "d", classes=4, per_class=20)
    assert main(["data", "info", "--data", str(root), "--imbalance", "step:4", "--val-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "kept" in out and "max/min kept = 4.5" in out  # 18 per class after validation: 4 vs 18


def test_data_info_with_a_bad_ratio_is_one_line(tiny_folder, tmp_path, capsys):
    root = tiny_folder(tmp_path / "d", classes=2, per_class=8)
    assert main(["data", "info", "--data", str(root), "--imbalance", "exponential:1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "greater than 1" in err
