import pytest
import torch

from longtail.models.seed_cnn import SeedCNN, SeedCNNConfig, count_parameters


@pytest.mark.parametrize("channels,size,padding", [(3, (32, 32), "same"), (1, (28, 28), "same"),
                                                   (3, (16, 16), "same"), (1, (48, 40), "valid"),
                                                   (3, (32, 32), "valid")])
def test_output_shape_for_rgb_grey_and_sizes(channels, size, padding):
    model = SeedCNN(SeedCNNConfig(in_channels=channels, num_classes=7, image_size=size, padding=padding))
    out = model(torch.randn(5, channels, *size))
    assert out.shape == (5, 7)


def test_seed_table_1_layer_shapes():
    m = SeedCNN()
    assert m.conv1.weight.shape == (32, 3, 3, 3)
    assert m.conv2.weight.shape == (64, 32, 3, 3)
    assert m.conv3.weight.shape == (64, 64, 3, 3)
    assert m.fc1.weight.shape == (64, 1024)  # 64 channels x 4 x 4 after three pools
    assert m.fc2.weight.shape == (10, 64)
    # 896 + 18496 + 36928 + 128 (bn) + 65600 + 650
    assert count_parameters(m) == 122698


def test_valid_padding_shrinks_flatten_size():
    m = SeedCNN(SeedCNNConfig(padding="valid"))
    assert m.fc1.in_features == 64 * 2 * 2  # 32 -> 30 -> 15 -> 13 -> 6 -> 4 -> 2


def test_cosine_head_gives_cosine_similarities():
    m = SeedCNN(SeedCNNConfig(head="cosine"))
    x = torch.randn(6, 3, 32, 32)
    out = m(x)
    f = torch.nn.functional.normalize(m.features(x), dim=1)
    w = torch.nn.functional.normalize(m.fc2.weight, dim=1)
    assert torch.allclose(out, f @ w.T, atol=1e-6) and out.abs().max() <= 1 + 1e-6


@pytest.mark.parametrize("size", [(32, 32), (15, 13)])
def test_pool_before_relu_gives_the_seed_order_numbers_and_gradients(size):
    """conv_relu_pool computes relu(pool(conv)) for speed; the seed table's order is pool(relu(conv))."""
    from longtail.models.seed_cnn import conv_relu_pool

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(4, 3, *size)
    fast = conv_relu_pool(conv, x)
    (g_fast,) = torch.autograd.grad((fast * torch.arange(fast.numel()).view_as(fast)).sum(), conv.weight)
    seed = torch.nn.functional.max_pool2d(torch.relu(conv(x)), 2)
    (g_seed,) = torch.autograd.grad((seed * torch.arange(seed.numel()).view_as(seed)).sum(), conv.weight)
    assert fast.shape == seed.shape
    assert torch.equal(fast, seed)
    assert torch.allclose(g_fast, g_seed, rtol=1e-5, atol=1e-4)
