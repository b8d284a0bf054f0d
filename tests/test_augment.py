"""Batch augmentations: each op against torchvision or its formula, at the draws its generator gives."""

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from longtail.data.augment import (adjust_brightness, adjust_contrast, compose, random_brightness, random_contrast,
                                   random_crop, random_crop_zeros, random_hflip, random_vflip)


def _batch(n=8, c=3, h=8, w=8):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("op, dim", [(random_hflip, -1), (random_vflip, -2)])
def test_flips_flip_the_images_their_coins_pick_along_their_axis(op, dim):
    x = _batch(64)
    y = op(x, torch.Generator().manual_seed(1))
    flipped = [(y[i] == x[i].flip(dim)).all().item() for i in range(64)]
    same = [(y[i] == x[i]).all().item() for i in range(64)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 10 < sum(flipped) < 54
    # exactly the images whose coin came up: the first 64 uniforms of the generator below 0.5
    coins = torch.rand(64, generator=torch.Generator().manual_seed(1)) < 0.5
    assert flipped == coins.tolist()


def test_crop_is_a_shifted_window_of_the_reflect_padded_image():
    x = _batch(16)
    y = random_crop(x, torch.Generator().manual_seed(2), padding=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(16):
        assert any((y[i] == padded[i, :, dy:dy + 8, dx:dx + 8]).all() for dy in range(5) for dx in range(5))


def test_crop_takes_the_window_at_the_offsets_it_draws():
    """The gather implementation against torch's reflect pad, window by window, at the very offsets
    drawn from the generator (dy for every image, then dx), including the extreme ones."""
    x = torch.rand(200, 3, 8, 6, generator=torch.Generator().manual_seed(3))
    y = random_crop(x, torch.Generator().manual_seed(4), padding=4)
    g = torch.Generator().manual_seed(4)
    dy, dx = torch.randint(0, 9, (200,), generator=g), torch.randint(0, 9, (200,), generator=g)
    assert {0, 8} <= set(dy.tolist()) and {0, 8} <= set(dx.tolist())
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    for i in range(200):
        assert torch.equal(y[i], padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 6])


def test_zero_filled_crop_is_torchvisions_random_crop_at_the_same_offsets():
    """crop-zeros against torch's constant (0) pad, window by window, at the offsets drawn for
    crop (so the two differ only where the window leaves the image), and against torchvision's
    RandomCrop(padding=4) for one image at a fixed offset."""
    x = torch.rand(200, 3, 8, 6, generator=torch.Generator().manual_seed(3)) + 0.5  # no pixel is 0
    y = random_crop_zeros(x, torch.Generator().manual_seed(4), padding=4)
    g = torch.Generator().manual_seed(4)
    dy, dx = torch.randint(0, 9, (200,), generator=g), torch.randint(0, 9, (200,), generator=g)
    assert {0, 8} <= set(dy.tolist()) and {0, 8} <= set(dx.tolist())
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(200):
        assert torch.equal(y[i], padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 6])
    reflected = random_crop(x, torch.Generator().manual_seed(4), padding=4)
    assert torch.equal(y != 0, y == reflected)  # same window: equal inside the image, 0 outside
    assert (y == 0).any(dim=(1, 2, 3)).sum() > 100
    i = int(((dy == 0) & (dx == 8)).nonzero()[0])  # the window at the top right corner
    assert torch.equal(y[i], TF.crop(TF.pad(x[i], [4, 4, 4, 4], fill=0), 0, 8, 8, 6))


def test_brightness_and_contrast_match_torchvision():
    x = _batch(4)
    assert torch.allclose(adjust_brightness(x, 1.3)[0], TF.adjust_brightness(x[0], 1.3), atol=1e-6)
    assert torch.allclose(adjust_contrast(x, 0.6)[1], TF.adjust_contrast(x[1], 0.6), atol=1e-5)


def test_compose_repeats_for_one_generator_seed_and_differs_for_another():
    aug = compose(["crop", "flip"])
    x = _batch()
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    # a deterministic function would pass the check above: the draws must also follow the seed
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(6)))
    # ops applied in order, each drawing from the one generator in turn
    g = torch.Generator().manual_seed(5)
    assert torch.equal(a, random_hflip(random_crop(x, g), g))


@pytest.mark.parametrize("strength", [0.2, 0.4])
def test_brightness_factors_are_uniform_on_both_sides_of_one(strength):
    # a constant grey image of 0.5: the output is 0.5 x factor, factor = 1 + (2u - 1) x strength
    x = torch.full((2000, 3, 2, 2), 0.5)
    factor = random_brightness(x, torch.Generator().manual_seed(3), strength)[:, 0, 0, 0] / 0.5
    u = torch.rand(2000, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(factor, 1 + (2 * u - 1) * strength, atol=1e-5)
    assert factor.min() < 1 - 0.9 * strength and factor.max() > 1 + 0.9 * strength
    assert 0.45 < (factor < 1).double().mean() < 0.55


@pytest.mark.parametrize("strength", [0.2, 0.4])
def test_contrast_factors_are_uniform_on_both_sides_of_one(strength):
    # one grey channel with pixels 0.25 and 0.75, mean 0.5: the output 0.75 pixel is 0.5 + 0.25 x factor
    x = torch.tensor([0.25, 0.75]).view(1, 1, 1, 2).expand(2000, 1, 1, 2).contiguous()
    y = random_contrast(x, torch.Generator().manual_seed(4), strength)
    factor = (y[:, 0, 0, 1] - 0.5) / 0.25
    u = torch.rand(2000, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(factor, 1 + (2 * u - 1) * strength, atol=1e-5)
    assert torch.allclose(y[:, 0, 0, 0], 0.5 - 0.25 * factor, atol=1e-6)
    assert factor.min() < 1 - 0.9 * strength and factor.max() > 1 + 0.9 * strength
