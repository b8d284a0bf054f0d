"""The networks: the seed CNN, ResNet-32, torchvision by name, heads, --pretrained, the registry."""

import pytest
import torch
from conftest import make_image_folder, one_line_error

from longtail.cli import main
from longtail.config import resolve_train_config
from longtail.errors import LongtailError
from longtail.models import (ARCHITECTURES, MODELS, CifarResNet, CifarResNetConfig, ModelRequest, build_from_arch,
                             model_arch, split_model_name)
from longtail.models.heads import CosineLinear, classifier_layer
from longtail.models.pretrained import load_pretrained
from longtail.models.resnet_cifar import ZeroPadShortcut
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


# --- ResNet-32 (He et al. 2016, as in LDAM-DRW's code) ------------------------------------------



def test_resnet32_parameter_count_by_hand():
    """3x3 convs without bias, BatchNorm (2 per channel), option-A shortcuts (no parameters)."""
    def conv(c_in: int, c_out: int) -> int:
        return 9 * c_in * c_out

    def bn(c: int) -> int:
        return 2 * c

    stem = conv(3, 16) + bn(16)
    stage1 = 5 * (2 * conv(16, 16) + 2 * bn(16))
    stage2 = conv(16, 32) + conv(32, 32) + 2 * bn(32) + 4 * (2 * conv(32, 32) + 2 * bn(32))
    stage3 = conv(32, 64) + conv(64, 64) + 2 * bn(64) + 4 * (2 * conv(64, 64) + 2 * bn(64))
    linear = 64 * 10 + 10
    assert stem + stage1 + stage2 + stage3 + linear == 464_154  # the "0.46 M" of He et al.'s table 6
    assert count_parameters(CifarResNet()) == 464_154
    assert count_parameters(CifarResNet(CifarResNetConfig(head="cosine"))) == 464_154 - 10  # no bias
    assert sum(isinstance(m, torch.nn.Conv2d) for m in CifarResNet().modules()) == 31  # + the linear: 32 layers


@pytest.mark.parametrize("channels,size,classes", [(3, (32, 32), 10), (1, (28, 28), 7), (3, (12, 20), 100)])
def test_resnet32_output_shape(channels, size, classes):
    model = CifarResNet(CifarResNetConfig(in_channels=channels, num_classes=classes))
    assert model(torch.randn(4, channels, *size)).shape == (4, classes)
    assert model.features(torch.randn(4, channels, *size)).shape == (4, 64)


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    out = ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 2, 2)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])  # the 16 new channels split 8 / 8 around the old ones
    assert not out[:, :8].any() and not out[:, 24:].any()


def test_resnet32_init_is_kaiming_normal_fan_in():
    torch.manual_seed(0)
    model = CifarResNet()
    w = model.layer3[1].conv1.weight  # 64 x 64 x 3 x 3: fan-in 576, std sqrt(2 / 576)
    assert abs(w.std().item() / (2 / 576) ** 0.5 - 1) < 0.03 and abs(w.mean().item()) < 0.002
    w = model.linear.weight  # 10 x 64: kaiming-normal too (LDAM's code re-initialises nn.Linear)
    assert abs(w.std().item() / (2 / 64) ** 0.5 - 1) < 0.25
    assert torch.equal(model.bn1.weight, torch.ones(16)) and torch.equal(model.bn1.bias, torch.zeros(16))


def test_resnet32_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = CifarResNet(CifarResNetConfig(num_classes=4))
    x, y = torch.randn(16, 3, 16, 16), torch.arange(16) % 4  # small: the test times the CPU, not the net
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(CifarResNetConfig(depth=30))


# --- the cosine head ------------------------------------------------------------------------------


def test_cosine_linear_is_the_cosine_of_features_and_class_vectors():
    torch.manual_seed(0)
    head = CosineLinear(5, 3)
    assert torch.allclose(head.weight.norm(dim=1), torch.ones(3))  # LDAM's init: unit class vectors
    x = torch.randn(4, 5)
    by_hand = torch.tensor([[float(torch.dot(xi, wj) / (xi.norm() * wj.norm())) for wj in head.weight.detach()] for xi in x])
    assert torch.allclose(head(x), by_hand, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x.bfloat16())
    assert out.dtype == torch.float32 and torch.allclose(out, head(x.bfloat16().float()), atol=1e-6)


def test_resnet32_cosine_head_bounds_the_logits():
    model = CifarResNet(CifarResNetConfig(head="cosine"))
    assert isinstance(model.linear, CosineLinear) and model.linear.weight.shape == (10, 64)
    assert model(torch.randn(6, 3, 32, 32)).abs().max() <= 1 + 1e-6


# --- torchvision by name ------------------------------------------------------------------------


@pytest.fixture
def no_downloads(monkeypatch):
    """Any attempt to fetch weights fails the test."""
    import torch.hub

    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.mark.parametrize("name,layer", [("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3")])
def test_torchvision_model_builds_offline_with_the_class_count(no_downloads, name, layer):
    model = build_from_arch(model_arch(f"tv:{name}", ModelRequest(num_classes=7)))
    assert classifier_layer(model, 7) == layer and model.get_submodule(layer).out_features == 7
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_torchvision_cosine_head_replaces_the_final_linear(no_downloads):
    model = build_from_arch(model_arch("tv:resnet18", ModelRequest(num_classes=7, head="cosine")))
    assert isinstance(model.fc, CosineLinear) and model.fc.weight.shape == (7, 512)
    assert model.eval()(torch.randn(2, 3, 32, 32)).abs().max() <= 1 + 1e-6


def test_torchvision_refusals_are_one_line():
    with pytest.raises(LongtailError, match="squeezenet1_1 scores classes with a Conv2d") as e:
        build_from_arch(model_arch("tv:squeezenet1_1", ModelRequest(head="cosine")))
    assert "\n" not in str(e.value)
    with pytest.raises(LongtailError, match="unknown torchvision classification model 'resnet999'.*resnet18"):
        split_model_name("tv:resnet999")
    with pytest.raises(LongtailError, match="tv:NAME"):
        split_model_name("tv")
    with pytest.raises(LongtailError, match="takes no ':big'"):
        split_model_name("resnet32:big")


def test_torchvision_input_checks():
    from longtail.models.torchvision_models import check_input

    model = build_from_arch(model_arch("tv:squeezenet1_1", ModelRequest(num_classes=3)))
    with pytest.raises(LongtailError, match="takes 3-channel"):
        check_input(model, "squeezenet1_1", (1, 32, 32))
    with pytest.raises(LongtailError, match="cannot take 16x16 px images"):
        check_input(model, "squeezenet1_1", (3, 16, 16))
    assert model.training  # the dry forward ran in eval mode and restored training mode
    check_input(model, "squeezenet1_1", (3, 17, 17))
    vit = build_from_arch(model_arch("tv:vit_b_32", ModelRequest(num_classes=3)))  # asserts its 224 px
    with pytest.raises(LongtailError, match="tv:vit_b_32 cannot take 32x32 px images \\(Wrong image height"):
        check_input(vit, "vit_b_32", (3, 32, 32))


# --- the registry and build_from_arch -------------------------------------------------------------


def test_models_registry_names():
    assert list(MODELS) == ["seed-cnn", "resnet32", "tv"]
    assert set(ARCHITECTURES) == {"SeedCNN", "JigsawNet", "JigsawClassifyNet", "JigsawResNet", "CifarResNet",
                                  "torchvision"}


@pytest.mark.parametrize("model,arch_name", [("seed-cnn", "SeedCNN"), ("resnet32", "CifarResNet"),
                                             ("tv:resnet18", "torchvision")])
@pytest.mark.parametrize("head", ["linear", "cosine"])
def test_build_from_arch_rebuilds_each_registered_model(model, arch_name, head):
    """The contract inference relies on: a checkpoint's arch record (through JSON, as config and
    checkpoint store it) rebuilds a module whose state_dict takes the trained weights."""
    import json

    req = ModelRequest(in_channels=3, num_classes=5, image_size=(32, 32), head=head)
    arch = model_arch(model, req)
    assert arch["name"] == arch_name and arch["num_classes"] == 5 and arch["head"] == head
    trained = build_from_arch(arch)
    rebuilt = build_from_arch(json.loads(json.dumps(arch)))
    assert type(rebuilt) is type(trained)
    rebuilt.load_state_dict(trained.state_dict())  # strict: same names and shapes
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt.eval()(x), trained.eval()(x))


def test_build_from_arch_rebuilds_the_jigsaw_net():
    from longtail.models import JigsawNet, JigsawNetConfig, arch_record

    net = JigsawNet(JigsawNetConfig(grid=3, tile_size=(10, 10)))
    build_from_arch(arch_record("JigsawNet", net.config)).load_state_dict(net.state_dict())


def test_torchvision_arch_record_names_the_model_and_its_options():
    arch = model_arch("tv:googlenet", ModelRequest(num_classes=4))
    assert arch == {"name": "torchvision", "model": "googlenet", "num_classes": 4, "head": "linear",
                    "options": {"aux_logits": False, "init_weights": True}}


# --- --pretrained ---------------------------------------------------------------------------------

def _fresh(model: str, classes: int, seed: int, head: str = "linear") -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_from_arch(model_arch(model, ModelRequest(num_classes=classes, head=head)))


def test_pretrained_round_trip_gives_equal_weights(tmp_path, capsys):
    source = _fresh("resnet32", 10, seed=1)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = _fresh("resnet32", 10, seed=2)
    log = load_pretrained(target, tmp_path / "w.pt", 10, "resnet32")
    assert log["classifier_loaded"] and log["tensors_loaded"] == len(source.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    assert "classifier linear loaded" in capsys.readouterr().err


def test_pretrained_skips_a_classifier_of_another_class_count(tmp_path, no_downloads):
    """As with torchvision's ImageNet file (1000 classes) into a 10-class run; that file also lacks
    BatchNorm's num_batches_tracked, which is dropped here to match."""
    source = _fresh("tv:resnet18", 1000, seed=1)
    weights = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(weights, tmp_path / "imagenet.pth")
    target = _fresh("tv:resnet18", 10, seed=2)
    fc_before = target.fc.weight.clone()
    log = load_pretrained(target, tmp_path / "imagenet.pth", 10, "tv:resnet18")
    assert log["classifier"] == "fc" and not log["classifier_loaded"]
    for key, value in weights.items():
        if not key.startswith("fc."):
            assert torch.equal(target.state_dict()[key], value), key
    assert torch.equal(target.fc.weight, fc_before)


def test_pretrained_skips_a_linear_classifier_under_a_cosine_head(tmp_path):
    torch.save(_fresh("resnet32", 10, seed=1).state_dict(), tmp_path / "w.pt")
    target = _fresh("resnet32", 10, seed=2, head="cosine")
    assert not load_pretrained(target, tmp_path / "w.pt", 10, "resnet32")["classifier_loaded"]


def test_pretrained_reads_a_longtail_or_dataparallel_checkpoint(tmp_path):
    source = _fresh("resnet32", 10, seed=1)
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}},
               tmp_path / "ldam.pth.tar")
    target = _fresh("resnet32", 10, seed=2)
    load_pretrained(target, tmp_path / "ldam.pth.tar", 10, "resnet32")
    assert torch.equal(target.layer3[4].conv2.weight, source.layer3[4].conv2.weight)


def test_pretrained_file_of_another_network_is_refused_naming_keys(tmp_path):
    torch.save(SeedCNN().state_dict(), tmp_path / "seed.pt")
    target = _fresh("resnet32", 10, seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(LongtailError) as e:
        load_pretrained(target, tmp_path / "seed.pt", 10, "resnet32")
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"--pretrained {tmp_path / 'seed.pt'} does not fit resnet32: ")
    assert "missing bn1.weight, bn1.bias, bn1.running_mean and " in message
    assert "unexpected conv1.bias, conv2.weight, conv2.bias and " in message
    assert "shape (file vs model) conv1.weight [32, 3, 3, 3] vs [16, 3, 3, 3]" in message
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing copied


@pytest.mark.parametrize("content,match", [(b"not a file of tensors", "is not a loadable weights file"),
                                           (None, "holds no state_dict")])
def test_pretrained_bad_files_are_one_line(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"epoch": 3, "note": "no tensors"}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(LongtailError, match=match) as e:
        load_pretrained(_fresh("resnet32", 10, seed=0), path, 10, "resnet32")
    assert "\n" not in str(e.value)
    with pytest.raises(LongtailError, match="not found"):
        load_pretrained(_fresh("resnet32", 10, seed=0), tmp_path / "missing.pt", 10, "resnet32")


# --- --model, --head and the loss through the command line ----------------------------------------

@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("img"), classes=3, per_class=12, size=32)


def test_unset_head_is_what_the_loss_needs():
    assert resolve_train_config({"loss": "ldam-drw"}).head == "cosine"
    assert resolve_train_config({}).head == "linear"
    assert resolve_train_config({"loss": "ce", "head": "cosine"}).head == "cosine"


def test_ldam_drw_with_a_linear_head_is_refused_before_data_loads(tmp_path, capsys):
    # the --data folder does not exist: the refusal must come first
    one_line_error(capsys, ["train", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "r"),
                            "--loss", "ldam-drw", "--head", "linear"],
                   "--loss ldam-drw needs --head cosine: it scales the logits by s=30")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("argv,needle", [
    (["--model", "vgg-ish"], "unknown model 'vgg-ish' (model in the command line); choose from seed-cnn, resnet32, tv"),
    (["--model", "tv:resnet999"], "unknown torchvision classification model 'resnet999'"),
    (["--model", "resnet32", "--padding", "valid"], "--padding valid applies to --model seed-cnn only"),
    (["--model", "tv:squeezenet1_1", "--head", "cosine"], "scores classes with a Conv2d (classifier.1)"),
    (["--pretrained", "w.pt", "--init", "c.pt"], "--init and --pretrained both set the starting weights"),
    (["--pretrained", "missing.pt"], "--pretrained file not found: missing.pt"),
    (["--model", "resnet32", "--init", "c.pt", "--transfer-layers", "fc1"],
     "unknown transfer layer 'fc1' of resnet32 (--transfer-layers); choose from conv1, bn1, layer1, layer2, layer3, "
     "linear"),
])
def test_model_settings_that_cannot_work_are_one_line_before_data_loads(tmp_path, capsys, argv, needle):
    one_line_error(capsys, ["train", "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "r"), *argv], needle)


def test_ldam_drw_trains_with_its_default_cosine_head(folder, tmp_path):
    import json
    import math

    out = tmp_path / "ldam"
    assert main(["train", "--data", str(folder), "--out", str(out), "--loss", "ldam-drw", "--epochs", "2", "--quiet",
                 "--precision", "fp32", "--batch-size", "8"]) == 0
    assert json.loads((out / "config.json").read_text())["head"] == "cosine"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["train_loss"]) for r in rows)


@pytest.mark.parametrize("model,arch_name", [("resnet32", "CifarResNet"), ("tv:resnet18", "torchvision")])
def test_train_each_model_end_to_end_and_rebuild_it_from_the_checkpoint(folder, tmp_path, no_downloads, model,
                                                                         arch_name):
    import json

    from longtail.runs import load_checkpoint

    out = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--out", str(out), "--model", model, "--recipe", "seed", "--epochs",
                 "1", "--quiet", "--precision", "fp32", "--batch-size", "8"]) == 0
    assert json.loads((out / "config.json").read_text())["model"] == model
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["arch"]["name"] == arch_name and ckpt["arch"]["num_classes"] == 3
    rebuilt = build_from_arch(ckpt["arch"])
    rebuilt.load_state_dict(ckpt["model"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_params"] == count_parameters(rebuilt)


def test_pretrained_end_to_end(folder, tmp_path):
    import json

    torch.manual_seed(5)
    weights = build_from_arch(model_arch("resnet32", ModelRequest(num_classes=100))).state_dict()
    torch.save(weights, tmp_path / "w.pt")
    out = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--out", str(out), "--model", "resnet32", "--pretrained",
                 str(tmp_path / "w.pt"), "--epochs", "1", "--quiet", "--precision", "fp32", "--batch-size", "8"]) == 0
    record = json.loads((out / "summary.json").read_text())["pretrained"]
    assert record == {"file": str(tmp_path / "w.pt"), "tensors_loaded": len(weights) - 2, "classifier": "linear",
                      "classifier_loaded": False}


@pytest.mark.parametrize("permutations, out_shape", [(0, (2, 4, 4)), (7, (2, 7))])
def test_the_resnet_jigsaw_trunk_has_resnet32s_layers_and_either_head(permutations, out_shape):
    """Every tensor of ResNet-32 but its classifier's is in the jigsaw net under the same name and
    shape (what --init copies by name); the head gives Sinkhorn scores or permutation logits."""
    from longtail.models import JigsawResNet, JigsawResNetConfig

    net = JigsawResNet(JigsawResNetConfig(grid=2, tile_size=(8, 8), permutations=permutations))
    trunk = {k: v.shape for k, v in net.state_dict().items()}
    resnet = {k: v.shape for k, v in CifarResNet().state_dict().items() if not k.startswith("linear.")}
    assert {k: trunk[k] for k in resnet} == resnet
    assert {k.split(".")[0] for k in trunk.keys() - resnet.keys()} == {"fc2", "combine", "score"}
    assert net(torch.rand(2, 4, 3, 8, 8)).shape == out_shape
    rebuilt = build_from_arch({"name": "JigsawResNet", **net.config.to_dict()})
    assert rebuilt.config == net.config
