"""--init: a jigsaw trunk into the seed CNN by the layer map, a classifier into any classifier by name
and shape; freezing, the learning-rate scale, the CLI end to end, and refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longtail.cli import main
from longtail.engine import build_optimizer
from longtail.errors import LongtailError
from longtail.models.jigsaw_net import JigsawNet
from longtail.models.seed_cnn import SeedCNN, SeedCNNConfig
from longtail.runs import load_checkpoint, save_checkpoint
from longtail.transfer import LAYER_MAP, init_from_checkpoint, init_from_jigsaw

TRANSFERRED = [f"{layer}.{p}" for layer in ("conv1", "conv2", "conv3", "fc1") for p in ("weight", "bias")]
NOT_TRANSFERRED = ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "fc2.weight", "fc2.bias"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from conftest import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("img"), classes=3, per_class=12, size=32)


@pytest.fixture(scope="module")
def jigsaw_checkpoint(folder, tmp_path_factory):
    """A real (tiny) pretraining run through the CLI: its checkpoint.pt."""
    out = tmp_path_factory.mktemp("pre") / "run"
    assert main(["pretrain", "--task", "jigsaw", "--data", str(folder), "--out", str(out), "--epochs", "1",
                 "--quiet", "--batch-size", "16", "--precision", "fp32"]) == 0
    return out / "checkpoint.pt"


def test_layer_map_is_the_seed_reports_table_2():
    assert LAYER_MAP == {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "fc1": "fc1"}


def test_transfer_copies_the_trunk_and_leaves_bn_and_fc2(jigsaw_checkpoint, capsys):
    trunk = load_checkpoint(jigsaw_checkpoint)["model"]
    torch.manual_seed(0)
    model = SeedCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = init_from_jigsaw(model, jigsaw_checkpoint, freeze=False)
    after = model.state_dict()
    for key in TRANSFERRED:
        assert torch.equal(after[key], trunk[key]), key
        assert not torch.equal(after[key], before[key]), key
    for key in NOT_TRANSFERRED:
        assert torch.equal(after[key], before[key]), key
    assert all(p.requires_grad for p in model.parameters())
    status = {row["name"]: row["status"] for row in log["layers"]}
    assert status == {"conv1": "transferred", "conv2": "transferred", "conv3": "transferred", "bn": "not transferred",
                      "fc1": "transferred", "fc2": "not transferred"}
    assert [row["shape"] for row in log["layers"] if row["name"] == "fc1"] == [[64, 1024]]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all(line.startswith("transfer: ") for line in err)
    assert "fc1" in err[4] and "[64, 1024]" in err[4] and "transferred" in err[4]


def test_freeze_keeps_the_transferred_layers_through_a_training_step(jigsaw_checkpoint):
    torch.manual_seed(0)
    model = SeedCNN()
    log = init_from_jigsaw(model, jigsaw_checkpoint, freeze=True)
    assert {row["name"] for row in log["layers"] if row["status"] == "frozen"} == set(LAYER_MAP)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, "sgd", 0.1, 5e-4)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    end = model.state_dict()
    for key in TRANSFERRED:
        assert torch.equal(end[key], start[key]), key
    for key in ("bn.weight", "fc2.weight", "fc2.bias"):
        assert not torch.equal(end[key], start[key]), key


def test_transfer_lr_scale_moves_the_transferred_layers_that_much_slower():
    """With plain SGD (no momentum, no decay) a step moves each weight by lr * grad: the transferred
    layers must move by exactly scale * lr * grad, the others by lr * grad; group 0 keeps the recipe lr."""
    torch.manual_seed(0)
    model = SeedCNN()
    optimizer = build_optimizer(model, "sgd", 0.1, 0.0, momentum=0.0, slow=set(LAYER_MAP), slow_scale=0.25)
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.025]
    start = {k: v.clone() for k, v in model.named_parameters()}
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    F.cross_entropy(model(x), y).backward()
    grads = {k: v.grad.clone() for k, v in model.named_parameters()}
    optimizer.step()
    for key, value in model.named_parameters():
        lr = 0.025 if key.split(".")[0] in LAYER_MAP else 0.1
        assert torch.allclose(start[key] - value.detach(), lr * grads[key], atol=1e-7), key
    assert len(build_optimizer(model, "adam", 1e-3, 0.0, slow=set(LAYER_MAP)).param_groups) == 1  # scale 1: one group


def test_train_with_init_end_to_end(folder, jigsaw_checkpoint, tmp_path):
    import json

    out = tmp_path / "cls"
    assert main(["train", "--data", str(folder), "--out", str(out), "--recipe", "seed", "--epochs", "1", "--quiet",
                 "--precision", "fp32", "--init", str(jigsaw_checkpoint), "--transfer", "freeze"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["transfer"]["freeze"] is True and summary["transfer"]["lr_scale"] == 0.0
    assert {row["name"]: row["status"] for row in summary["transfer"]["layers"]}["conv2"] == "frozen"
    trunk, trained = load_checkpoint(jigsaw_checkpoint)["model"], load_checkpoint(out / "checkpoint.pt")["model"]
    for key in TRANSFERRED:
        assert torch.equal(trained[key], trunk[key]), key


def test_refused_transfer_leaves_the_model_untouched(jigsaw_checkpoint):
    model = SeedCNN(SeedCNNConfig(padding="valid"))  # fc1 takes 64 * 2 * 2 inputs, the trunk gives 1024
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(LongtailError, match="cannot transfer fc1.weight"):
        init_from_jigsaw(model, jigsaw_checkpoint, freeze=True)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def _one_line_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("longtail: error: ") and err.count("\n") == 1, err
    assert match in err, err


def test_grid_that_does_not_divide_the_image_is_one_line(folder, tmp_path, capsys):
    _one_line_error(capsys, ["pretrain", "--task", "jigsaw", "--data", str(folder), "--out", str(tmp_path / "p"),
                             "--grid", "3"], "3x3 grid does not divide 32x32")
    assert not (tmp_path / "p").exists()


def test_unknown_task_is_one_line(folder, tmp_path, capsys):
    _one_line_error(capsys, ["pretrain", "--task", "colorize", "--data", str(folder), "--out", str(tmp_path / "p")],
                    "unknown pretext task 'colorize'")


def _classifier_checkpoint(path):
    save_checkpoint(path, {"kind": "classifier", "arch": {"name": "SeedCNN"}, "model": SeedCNN().state_dict()})
    return path


def _jigsaw_checkpoint_from_16px_images(path):
    # 8x8 tiles: fc1 takes 64 * 2 * 2 inputs, not the classifier's 1024
    from longtail.models.jigsaw_net import JigsawNetConfig

    net = JigsawNet(JigsawNetConfig(tile_size=(8, 8)))
    save_checkpoint(path, {"kind": "jigsaw", "arch": {"name": "JigsawNet", **net.config.to_dict()},
                           "model": net.state_dict()})
    return path


def _text_file(path):
    path.write_text("not a checkpoint\n")
    return path


def _foreign_torch_file(path):
    torch.save({"weights": torch.zeros(2)}, path)
    return path


def _missing_file(path):
    return path.parent / "missing.pt"


def _resnet_checkpoint(path):
    from longtail.models import CifarResNet

    save_checkpoint(path, {"kind": "classifier", "arch": {"name": "CifarResNet"}, "model": CifarResNet().state_dict()})
    return path


def _other_kind_checkpoint(path):
    save_checkpoint(path, {"kind": "colorize", "arch": {"name": "ColorNet"}, "model": {}})
    return path


def _unknown_rotation_net_checkpoint(path):
    save_checkpoint(path, {"kind": "rotation", "arch": {"name": "RotNet"}, "model": {}})
    return path


@pytest.mark.parametrize("make,match", [
    (_resnet_checkpoint, "(CifarResNet) shares no layer with this run's seed-cnn: no tensor matches in name and "
                         "shape"),
    (_other_kind_checkpoint, "is a colorize checkpoint; give the checkpoint.pt of a `longtail pretrain` run (jigsaw "
                             "or rotation) or of a `longtail train` run"),
    (_unknown_rotation_net_checkpoint, "is a rotation checkpoint of a net that cannot be rebuilt (RotNet)"),
    (_jigsaw_checkpoint_from_16px_images, "cannot transfer fc1.weight: the jigsaw net has shape [64, 256], the "
                                          "classifier [64, 1024] (the trunk fits a classifier with padding 'same' "
                                          "on images twice the size of its 8x8 px tiles)"),
    (_text_file, "is not a loadable longtail checkpoint"),
    (_foreign_torch_file, "is not a longtail checkpoint"),
    (_missing_file, "checkpoint not found"),
])
def test_bad_init_checkpoints_are_one_line(folder, tmp_path, capsys, make, match):
    path = make(tmp_path / "init.pt")
    _one_line_error(capsys, ["train", "--data", str(folder), "--out", str(tmp_path / "cls"), "--epochs", "1", "--quiet",
                             "--init", str(path)], match)
    assert not (tmp_path / "cls").exists()


def test_transfer_layers_copies_only_the_named_layers(jigsaw_checkpoint):
    trunk = load_checkpoint(jigsaw_checkpoint)["model"]
    torch.manual_seed(0)
    model = SeedCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = init_from_jigsaw(model, jigsaw_checkpoint, layers=["conv3", "conv1", "conv2"])
    after = model.state_dict()
    for key in TRANSFERRED:
        source = trunk if key.split(".")[0] != "fc1" else before
        assert torch.equal(after[key], source[key]), key
    assert {row["name"]: row["status"] for row in log["layers"]}["fc1"] == "not transferred"


def test_transfer_layers_end_to_end_and_refusal(folder, jigsaw_checkpoint, tmp_path, capsys):
    import json

    out = tmp_path / "cls"
    assert main(["train", "--data", str(folder), "--out", str(out), "--recipe", "seed", "--epochs", "1", "--quiet",
                 "--precision", "fp32", "--init", str(jigsaw_checkpoint), "--transfer-layers", "conv1,conv2,conv3",
                 "--transfer", "freeze"]) == 0
    status = {row["name"]: row["status"] for row in json.loads((out / "summary.json").read_text())["transfer"]["layers"]}
    assert status == {"conv1": "frozen", "conv2": "frozen", "conv3": "frozen", "bn": "not transferred",
                      "fc1": "not transferred", "fc2": "not transferred"}
    capsys.readouterr()
    assert main(["train", "--data", str(folder), "--out", str(tmp_path / "bad"), "--init", str(jigsaw_checkpoint),
                 "--transfer-layers", "conv1,bn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["longtail: error: --transfer-layers must name some of conv1, conv2, conv3, fc1 (the jigsaw layer "
                   "map), got conv1, bn"]
    assert not (tmp_path / "bad").exists()
    assert main(["train", "--data", str(folder), "--out", str(tmp_path / "bad"), "--init", str(jigsaw_checkpoint),
                 "--transfer-layers", "conv1,fc9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["longtail: error: unknown transfer layer 'fc9' of seed-cnn (--transfer-layers); choose from "
                   "conv1, conv2, conv3, bn, fc1, fc2"]


def test_init_from_jigsaw_refuses_a_classifier_checkpoint(tmp_path):
    with pytest.raises(LongtailError, match="is a classifier checkpoint \\(SeedCNN\\); give the checkpoint.pt of a "):
        init_from_jigsaw(SeedCNN(), _classifier_checkpoint(tmp_path / "c.pt"))


# --- classifier -> classifier, by name and shape ------------------------------------------------


def test_classifier_transfer_copies_exactly_the_matching_tensors(tmp_path, capsys):
    """A 10-class SeedCNN into a 3-class one: everything but fc2 matches in name and shape."""
    torch.manual_seed(1)
    source = SeedCNN()
    source.bn.running_mean.uniform_()  # statistics are copied too, not only parameters
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"kind": "classifier", "arch": {"name": "SeedCNN"}, "model": source.state_dict()})
    torch.manual_seed(2)
    model = SeedCNN(SeedCNNConfig(num_classes=3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = init_from_checkpoint(model, path, described="seed-cnn")
    after, weights = model.state_dict(), source.state_dict()
    for key in after:
        expected = before[key] if key.startswith("fc2.") else weights[key]
        assert torch.equal(after[key], expected), key
    assert log["tensors_copied"] == len(after) - 2
    assert log["not_copied"] == [
        {"key": "fc2.weight", "reason": "shape [10, 64] in the checkpoint, [3, 64] here"},
        {"key": "fc2.bias", "reason": "shape [10] in the checkpoint, [3] here"}]
    assert log["unused"] == [] and log["source_arch"] == "SeedCNN"
    assert {r["name"]: (r["status"], r["tensors"]) for r in log["layers"]} == {
        "conv1": ("transferred", [2, 2]), "conv2": ("transferred", [2, 2]), "conv3": ("transferred", [2, 2]),
        "bn": ("transferred", [5, 5]), "fc1": ("transferred", [2, 2]), "fc2": ("not transferred", [0, 2])}
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 7 and all(line.startswith("transfer: ") for line in err)
    assert err[0].split() == ["transfer:", "conv1", "[32,", "3,", "3,", "3]", "transferred", "<-", "SeedCNN", "conv1"]
    assert err[6] == ("transfer: not copied: fc2.weight (shape [10, 64] in the checkpoint, [3, 64] here), fc2.bias "
                      "(shape [10] in the checkpoint, [3] here)")


def _resnet32_run_checkpoint(path, classes=10, seed=1):
    from longtail.models import CifarResNet, CifarResNetConfig

    torch.manual_seed(seed)
    net = CifarResNet(CifarResNetConfig(num_classes=classes))
    save_checkpoint(path, {"kind": "classifier", "arch": {"name": "CifarResNet", **net.config.to_dict()},
                           "model": net.state_dict()})
    return net


def test_resnet_transfer_freezes_the_layers_copied_whole_and_lists_the_rest(tmp_path, capsys):
    from longtail.models import CifarResNet, CifarResNetConfig

    source = _resnet32_run_checkpoint(tmp_path / "r.pt", classes=100)
    torch.manual_seed(2)
    model = CifarResNet(CifarResNetConfig(num_classes=10))
    log = init_from_checkpoint(model, tmp_path / "r.pt", freeze=True, described="resnet32")
    status = {r["name"]: r["status"] for r in log["layers"]}
    assert status == {"conv1": "frozen", "bn1": "frozen", "layer1": "frozen", "layer2": "frozen", "layer3": "frozen",
                      "linear": "not transferred"}
    assert [p.requires_grad for p in model.parameters()] == [False] * (len(list(model.parameters())) - 2) + [True] * 2
    for key, value in model.state_dict().items():
        if not key.startswith("linear."):
            assert torch.equal(value, source.state_dict()[key]), key
    assert "transfer: layer2 [] " in capsys.readouterr().err


def test_transfer_layers_pick_top_level_layers_of_any_model(tmp_path):
    from longtail.models import CifarResNet

    source = _resnet32_run_checkpoint(tmp_path / "r.pt")
    torch.manual_seed(2)
    model = CifarResNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = init_from_checkpoint(model, tmp_path / "r.pt", layers=["layer1", "conv1"], described="resnet32")
    for key, value in model.state_dict().items():
        expected = source.state_dict() if key.split(".")[0] in ("layer1", "conv1") else before
        assert torch.equal(value, expected[key]), key
    assert {r["name"] for r in log["layers"] if r["status"] == "transferred"} == {"conv1", "layer1"}
    assert {"key": "layer2.0.conv1.weight", "reason": "not among --transfer-layers"} in log["not_copied"]
    with pytest.raises(LongtailError, match="unknown transfer layer 'fc1' of resnet32 \\(--transfer-layers\\); "
                                            "choose from conv1, bn1, layer1, layer2, layer3, linear"):
        init_from_checkpoint(CifarResNet(), tmp_path / "r.pt", layers=["fc1"], described="resnet32")


def test_nothing_in_common_is_refused_and_leaves_the_model_untouched(tmp_path):
    _resnet32_run_checkpoint(tmp_path / "r.pt")
    model = SeedCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(LongtailError, match="shares no layer with this run's seed-cnn") as e:
        init_from_checkpoint(model, tmp_path / "r.pt", described="seed-cnn")
    assert "\n" not in str(e.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_jigsaw_into_another_model_is_refused(jigsaw_checkpoint):
    from longtail.models import CifarResNet

    with pytest.raises(LongtailError, match="its trunk transfers into --model seed-cnn only .* not into resnet32"):
        init_from_checkpoint(CifarResNet(), jigsaw_checkpoint, described="resnet32")


def test_classifier_init_end_to_end_with_lr_scale(folder, tmp_path):
    """A resnet32 run started from another resnet32 run's checkpoint: its summary records what was
    copied, and the transferred layers train at the scaled rate (their own parameter group)."""
    import json

    first, second = tmp_path / "a", tmp_path / "b"
    common = ["train", "--data", str(folder), "--model", "resnet32", "--recipe", "seed", "--epochs", "1", "--quiet",
              "--precision", "fp32", "--batch-size", "16"]
    assert main([*common, "--out", str(first)]) == 0
    assert main([*common, "--out", str(second), "--init", str(first / "checkpoint.pt"),
                 "--transfer-lr-scale", "0.5"]) == 0
    transfer = json.loads((second / "summary.json").read_text())["transfer"]
    assert transfer["lr_scale"] == 0.5 and transfer["not_copied"] == [] and transfer["unused"] == []
    assert {r["status"] for r in transfer["layers"]} == {"transferred"}
    # every layer was copied whole, so the optimizer's one parameter group is the scaled one
    groups = load_checkpoint(second / "checkpoint.pt")["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [0.5e-3]


# --- from every pretext task ----------------------------------------------------------------------


def _save_run_checkpoint(path, kind, arch_name, net):
    arch = {"name": arch_name, **net.config.to_dict()}
    save_checkpoint(path, {"kind": kind, "arch": arch, "model": net.state_dict()})
    return path


def test_rotation_transfers_by_name_and_never_its_head(tmp_path, capsys):
    """Into a 4-class classifier the rotation head fits in shape, yet rotations are not classes."""
    torch.manual_seed(1)
    source = SeedCNN(SeedCNNConfig(num_classes=4))
    source.bn.running_var.uniform_(1, 2)
    path = _save_run_checkpoint(tmp_path / "rot.pt", "rotation", "SeedCNN", source)
    torch.manual_seed(2)
    model = SeedCNN(SeedCNNConfig(num_classes=4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = init_from_checkpoint(model, path, described="seed-cnn")
    for key, value in model.state_dict().items():
        assert torch.equal(value, (before if key.startswith("fc2.") else source.state_dict())[key]), key
    assert log["source_kind"] == "rotation" and log["pretext_head"] == "fc2"
    assert {r["name"]: r["status"] for r in log["layers"]} == {
        "conv1": "transferred", "conv2": "transferred", "conv3": "transferred", "bn": "transferred",
        "fc1": "transferred", "fc2": "not transferred"}
    assert log["not_copied"] == [{"key": f"fc2.{p}", "reason": "fc2 scores the pretext task, not classes"}
                                 for p in ("weight", "bias")]
    assert "transfer: fc2    [4, 64]" in capsys.readouterr().err


def test_a_classify_head_jigsaw_trunk_transfers_by_the_layer_map(tmp_path):
    from longtail.models import JigsawClassifyNet, JigsawClassifyNetConfig

    torch.manual_seed(1)
    source = JigsawClassifyNet(JigsawClassifyNetConfig(permutations=24))
    path = _save_run_checkpoint(tmp_path / "jig.pt", "jigsaw", "JigsawClassifyNet", source)
    torch.manual_seed(2)
    model = SeedCNN()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = init_from_checkpoint(model, path, described="seed-cnn")
    for key in TRANSFERRED:
        assert torch.equal(model.state_dict()[key], source.state_dict()[key]), key
    for key in NOT_TRANSFERRED:
        assert torch.equal(model.state_dict()[key], before[key]), key
    assert log["source_kind"] == "jigsaw" and log["pretrain_grid"] == 2


def test_backbones_that_share_only_batchnorm_counters_are_refused(tmp_path):
    """ResNet-32 and torchvision's resnet18 both have bn1.num_batches_tracked (shape []): once, that
    alone was 'partly transferred'."""
    from longtail.models import ModelRequest, build_model

    _resnet32_run_checkpoint(tmp_path / "r.pt")
    model, _ = build_model("tv:resnet18", ModelRequest())
    with pytest.raises(LongtailError, match="shares no layer with this run's tv:resnet18"):
        init_from_checkpoint(model, tmp_path / "r.pt", described="tv:resnet18")


@pytest.fixture(scope="module")
def folder16(tmp_path_factory):
    from conftest import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("img16"), classes=3, per_class=12, size=16)


@pytest.mark.parametrize("model", ["seed-cnn", "resnet32"])
def test_rotation_pretraining_initialises_the_same_model_end_to_end(folder16, tmp_path, model):
    import json

    pre, cls = tmp_path / "rot", tmp_path / "cls"
    common = ["--data", str(folder16), "--model", model, "--epochs", "1", "--quiet", "--precision", "fp32",
              "--batch-size", "16"]
    assert main(["pretrain", "--task", "rotation", "--out", str(pre), *common]) == 0
    ckpt = load_checkpoint(pre / "checkpoint.pt")
    assert ckpt["kind"] == "rotation" and ckpt["arch"]["num_classes"] == 4
    assert main(["train", "--out", str(cls), "--recipe", "seed", "--init", str(pre / "checkpoint.pt"), *common]) == 0
    transfer = json.loads((cls / "summary.json").read_text())["transfer"]
    head = "fc2" if model == "seed-cnn" else "linear"
    assert transfer["pretext_head"] == head and transfer["unused"] == []
    assert {r["name"]: r["status"] for r in transfer["layers"]} == {
        r["name"]: "not transferred" if r["name"] == head else "transferred" for r in transfer["layers"]}
    trained = load_checkpoint(cls / "checkpoint.pt")["model"]
    assert trained.keys() == ckpt["model"].keys()


def test_rotation_into_another_backbone_and_jigsaw_of_another_model_are_one_line(folder16, tmp_path, capsys):
    pre = tmp_path / "rot"
    assert main(["pretrain", "--task", "rotation", "--data", str(folder16), "--out", str(pre), "--epochs", "1",
                 "--quiet", "--batch-size", "16"]) == 0
    _one_line_error(capsys, ["train", "--data", str(folder16), "--out", str(tmp_path / "cls"), "--model", "resnet32",
                             "--epochs", "1", "--quiet", "--init", str(pre / "checkpoint.pt")],
                    "(SeedCNN) shares no layer with this run's resnet32")
    assert not (tmp_path / "cls").exists()  # refused before the run folder was made
    _one_line_error(capsys, ["pretrain", "--task", "jigsaw", "--model", "tv:resnet18", "--data", str(folder16),
                             "--out", str(tmp_path / "jig")],
                    "jigsaw pretraining trains the trunk of --model seed-cnn or resnet32, not tv:resnet18")
    assert not (tmp_path / "jig").exists()


@pytest.mark.parametrize("head", ["sinkhorn", "classify"])
def test_a_resnet32_jigsaw_trunk_initialises_resnet32_by_name(folder16, tmp_path, head):
    import json

    pre, cls = tmp_path / "jig", tmp_path / "cls"
    common = ["--data", str(folder16), "--model", "resnet32", "--epochs", "1", "--quiet", "--precision", "fp32",
              "--batch-size", "16"]
    assert main(["pretrain", "--task", "jigsaw", "--jigsaw-head", head, "--permutations", "6", "--out", str(pre),
                 *common]) == 0
    ckpt = load_checkpoint(pre / "checkpoint.pt")
    assert ckpt["arch"]["name"] == "JigsawResNet" and ckpt["arch"]["permutations"] == (6 if head == "classify" else 0)
    assert main(["train", "--out", str(cls), "--recipe", "seed", "--init", str(pre / "checkpoint.pt"),
                 "--transfer", "freeze", *common]) == 0
    transfer = json.loads((cls / "summary.json").read_text())["transfer"]
    assert transfer["source_kind"] == "jigsaw" and "pretext_head" not in transfer
    assert {r["name"]: r["status"] for r in transfer["layers"]} == {
        "conv1": "frozen", "bn1": "frozen", "layer1": "frozen", "layer2": "frozen", "layer3": "frozen",
        "linear": "not transferred"}
    assert {k.split(".")[0] for k in transfer["unused"]} == {"fc2", "combine", "score"}
    trained = load_checkpoint(cls / "checkpoint.pt")["model"]
    for key in ("conv1.weight", "layer1.0.conv1.weight", "layer3.4.conv2.weight", "bn1.weight"):
        assert torch.equal(trained[key], ckpt["model"][key]), key


def test_a_resnet32_jigsaw_trunk_into_the_seed_cnn_is_refused(tmp_path):
    from longtail.models import JigsawResNet

    path = _save_run_checkpoint(tmp_path / "jr.pt", "jigsaw", "JigsawResNet", JigsawResNet())
    with pytest.raises(LongtailError, match="\\(JigsawResNet\\) shares no layer with this run's seed-cnn"):
        init_from_checkpoint(SeedCNN(), path, described="seed-cnn")
