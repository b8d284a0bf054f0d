"""Mixup and Remix: mixed images and labels against hand computations, the draws against their
coordinates (seed, epoch, step), Remix's label weights in each of its cases, and a short run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from longtail.config import resolve_train_config
from longtail.errors import LongtailError
from longtail.losses import LOSSES, LossContext, build_loss
from longtail.run import run as run_training
from longtail.seeding import derived_generator
from longtail.tasks.mixing import (MIX_STREAM, MIXES, MixContext, MixedBatch, Mixup, Remix, build_mix, draw_pairing, mix_step,
                                   mix_images, mixed_loss, remix_label_weights)
from tests.conftest import one_line_error

# a 3-class batch of three 1x1x2 "images", one per class
X = torch.tensor([[[[1.0, 2.0]]], [[[10.0, 20.0]]], [[[100.0, 200.0]]]])
Y = torch.tensor([0, 1, 2])
LOGITS = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0], [0.0, 0.3, 1.2]])


def ce(row, y):
    return -math.log(math.exp(row[y]) / sum(math.exp(v) for v in row))


def test_mixed_images_are_lam_x_plus_one_minus_lam_x_of_the_partner():
    mixed = mix_images(X, 0.25, torch.tensor([2, 0, 1]))
    # image 0 with image 2, 1 with 0, 2 with 1, each 1/4 its own and 3/4 its partner's
    # 0.25 * 1 + 0.75 * 100 = 75.25, 0.25 * 2 + 0.75 * 200 = 150.5, ...
    assert mixed.flatten().tolist() == pytest.approx([75.25, 150.5, 3.25, 6.5, 32.5, 65.0])


def test_mixup_batch_is_the_draw_applied_to_images_and_labels():
    batch = Mixup(alpha=1.0)(X, Y, derived_generator(0, 1, 2, MIX_STREAM))
    lam, perm = draw_pairing(3, 1.0, derived_generator(0, 1, 2, MIX_STREAM))
    p = perm.tolist()
    assert 0 < lam < 1 and sorted(p) == [0, 1, 2]
    for i in range(3):
        assert batch.x[i].flatten().tolist() == pytest.approx((lam * X[i] + (1 - lam) * X[p[i]]).flatten().tolist())
    assert batch.y_a.tolist() == [0, 1, 2] and batch.y_b.tolist() == [p[0], p[1], p[2]]
    assert batch.weight_a == lam  # mixup: the label is mixed with the image's lam


def test_mixup_loss_is_lam_times_the_loss_at_each_label():
    lam, y_b = 0.3, torch.tensor([2, 0, 1])
    loss = build_loss("ce", LossContext(torch.tensor([5, 5, 5])))
    got = mixed_loss(loss, LOGITS, MixedBatch(X, Y, y_b, lam))
    rows = LOGITS.tolist()
    want = sum(lam * ce(r, a) + (1 - lam) * ce(r, b) for r, a, b in zip(rows, [0, 1, 2], [2, 0, 1])) / 3
    assert float(got) == pytest.approx(want, rel=1e-6)


def test_per_sample_label_weights_mix_each_sample_by_its_own_weight():
    s, y_b = torch.tensor([0.0, 1.0, 0.4]), torch.tensor([2, 0, 1])
    loss = build_loss("ce", LossContext(torch.tensor([5, 5, 5])))
    got = mixed_loss(loss, LOGITS, MixedBatch(X, Y, y_b, s))
    rows = LOGITS.tolist()
    want = (ce(rows[0], 2) + ce(rows[1], 1) + 0.4 * ce(rows[2], 2) + 0.6 * ce(rows[2], 1)) / 3
    assert float(got) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_per_sample_weights_all_lam_equal_mixups_scalar_form_for_every_loss(name):
    counts = torch.tensor([100, 10, 1])
    loss = build_loss(name, LossContext(counts, epochs=5, label_smoothing=0.1))
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(4)  # LDAM-DRW with its weights on: a weighted mean
    y_b = torch.tensor([2, 0, 1])
    scalar = mixed_loss(loss, LOGITS, MixedBatch(X, Y, y_b, 0.3))
    per_sample = mixed_loss(loss, LOGITS, MixedBatch(X, Y, y_b, torch.full((3,), 0.3)))
    assert float(per_sample) == pytest.approx(float(scalar), rel=1e-5)


def test_same_coordinates_same_draw_other_coordinates_other_draws():
    def draw(*coords):
        lam, perm = draw_pairing(16, 1.0, derived_generator(*coords, MIX_STREAM))
        return lam, perm.tolist()

    assert draw(3, 1, 5) == draw(3, 1, 5)
    others = [draw(3, 1, 6), draw(3, 2, 5), draw(4, 1, 5)]  # next step, next epoch, other seed
    assert all(o[0] != draw(3, 1, 5)[0] and o[1] != draw(3, 1, 5)[1] for o in others)


def test_a_training_step_mixes_by_its_own_coordinates():
    # what the classification task calls each step: (seed, epoch, step) in, that step's mixing out
    x, y = torch.arange(16.0).reshape(16, 1), torch.arange(16) % 3
    mixer = Mixup(1.0)

    def step(*coords):
        batch = mix_step(mixer, x, y, coords)
        return batch.x.tolist(), batch.y_b.tolist()

    assert step(3, 1, 5) == step(3, 1, 5)
    assert all(step(*other) != step(3, 1, 5) for other in [(3, 1, 6), (3, 2, 5), (4, 1, 5)])


def test_lam_follows_beta_alpha_alpha():
    lams = torch.tensor([draw_pairing(2, alpha, derived_generator(0, 0, step, MIX_STREAM))[0]
                         for alpha in (1.0, 0.2) for step in range(2000)]).view(2, -1)
    uniform, skewed = lams
    # Beta(1, 1) is uniform: mean 1/2, variance 1/12; Beta(0.2, 0.2) piles up near 0 and 1
    assert float(uniform.mean()) == pytest.approx(0.5, abs=0.03)
    assert float(uniform.var()) == pytest.approx(1 / 12, abs=0.01)
    assert float(((skewed < 0.1) | (skewed > 0.9)).float().mean()) > 0.6


@pytest.mark.parametrize("counts, y_a, y_b, lam, want", [
    ([100, 10, 1], 0, 1, 0.3, 0.0),  # n_a / n_b = 10 >= 3 and lam < 0.5: all to the rare b
    ([100, 10, 1], 0, 1, 0.7, 0.7),  # a's image dominates: mixup's lam
    ([100, 10, 1], 1, 0, 0.7, 1.0),  # n_a / n_b = 1/10 <= 1/3 and 1 - lam < 0.5: all to the rare a
    ([100, 10, 1], 1, 0, 0.3, 0.3),  # the rare a's image is the smaller part: mixup's lam
    ([100, 10, 1], 2, 2, 0.3, 0.3),  # one class: lam
    ([100, 50, 1], 0, 1, 0.3, 0.3),  # ratio 2 < kappa: lam
    ([30, 10, 1], 0, 1, 0.3, 0.0),  # ratio exactly kappa counts (>=)
    ([30, 10, 1], 1, 0, 0.7, 1.0),  # ratio exactly 1 / kappa counts (<=)
    ([100, 10, 1], 0, 1, 0.5, 0.5),  # lam = tau is not below tau
])
def test_remix_label_weight_by_hand(counts, y_a, y_b, lam, want):
    got = remix_label_weights(lam, torch.tensor([y_a]), torch.tensor([y_b]), torch.tensor(counts), kappa=3, tau=0.5)
    assert got.tolist() == pytest.approx([want])


def test_remix_batch_mixes_images_as_mixup_and_labels_by_class_size():
    counts = torch.tensor([100, 10, 1])
    g = lambda: derived_generator(7, 0, 0, MIX_STREAM)  # noqa: E731
    up, re = Mixup(1.0)(X, Y, g()), Remix(counts, 1.0)(X, Y, g())
    assert torch.equal(up.x, re.x) and torch.equal(up.y_b, re.y_b)
    assert re.weight_a.tolist() == pytest.approx(remix_label_weights(up.weight_a, Y, up.y_b, counts).tolist())


def test_registry_and_bad_parameters():
    assert set(MIXES) == {"none", "mixup", "remix"}
    assert build_mix("none", MixContext(torch.tensor([1, 1]))) is None
    with pytest.raises(LongtailError, match="alpha must be > 0"):
        build_mix("mixup", MixContext(torch.tensor([1, 1]), alpha=0.0))
    with pytest.raises(LongtailError, match="unknown mix method 'cutmix'"):
        build_mix("cutmix", MixContext(torch.tensor([1, 1])))


@pytest.mark.parametrize("argv, needle", [
    (["--mix", "mixup", "--mix-alpha", "0"], "mix_alpha in the command line must be > 0"),
    (["--mix-alpha", "0.4"], "--mix-alpha applies with --mix mixup or remix, but --mix is none"),
    (["--mix", "mixup", "--remix-kappa", "5"], "--remix-kappa applies with --mix remix"),
    (["--mix", "blend"], "unknown mix method 'blend'"),
])
def test_bad_mix_settings_are_one_line(tiny_folder, tmp_path, capsys, argv, needle):
    root = tiny_folder(tmp_path / "d", classes=3, per_class=6)
    one_line_error(capsys, ["train", "--data", str(root), "--out", str(tmp_path / "run"), "--epochs", "1",
                            "--val-size", "3", "--quiet", *argv], needle)
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("mix", ["mixup", "remix"])
def test_a_short_run_with_mixing_trains_and_records_it(tiny_folder, tmp_path, mix):
    root = tiny_folder(tmp_path / "d", classes=3, per_class=12)
    cfg = resolve_train_config({"data": str(root), "out": str(tmp_path / "run"), "epochs": 1, "quiet": True,
                                "batch_size": 8, "val_size": 6, "imbalance": "counts:10,5,2", "mix": mix,
                                "loss": "weighted", "mix_alpha": 0.4})
    summary = run_training(cfg)
    assert math.isfinite(summary["test_loss"])
    assert (tmp_path / "run" / "config.json").read_text().count(f'"mix": "{mix}"') == 1


def test_mixing_changes_what_is_trained(tiny_folder, tmp_path):
    root = tiny_folder(tmp_path / "d", classes=3, per_class=12)
    losses = []
    for mix in ("none", "mixup"):
        cfg = resolve_train_config({"data": str(root), "out": str(tmp_path / mix), "epochs": 1, "quiet": True,
                                    "batch_size": 8, "val_size": 6, "mix": mix})
        run_training(cfg)
        losses.append(json.loads((tmp_path / mix / "metrics.jsonl").read_text().splitlines()[0])["train_loss"])
    assert losses[0] != losses[1]
