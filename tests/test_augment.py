import torch
import torchvision.transforms.v2.functional as TF

from longtail.data.augment import adjust_brightness, adjust_contrast, compose, random_crop, random_hflip


def _batch(n=8, c=3, h=8, w=8):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(0))


def test_hflip_flips_some_images_exactly():
    x = _batch(64)
    y = random_hflip(x, torch.Generator().manual_seed(1))
    flipped = [(y[i] == x[i].flip(-1)).all().item() for i in range(64)]
    same = [(y[i] == x[i]).all().item() for i in range(64)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 10 < sum(flipped) < 54


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


def test_brightness_and_contrast_match_torchvision():
    x = _batch(4)
    assert torch.allclose(adjust_brightness(x, 1.3)[0], TF.adjust_brightness(x[0], 1.3), atol=1e-6)
    assert torch.allclose(adjust_contrast(x, 0.6)[1], TF.adjust_contrast(x[1], 0.6), atol=1e-5)


def test_compose_is_deterministic_given_generator():
    aug = compose(["crop", "flip"])
    x = _batch()
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
