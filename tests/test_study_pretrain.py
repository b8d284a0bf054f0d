"""A study's named pretrainings: data_from (an arm's training images, or all of them), init =
"pretrain:NAME", the folders, and the one-line refusals before anything runs."""

from __future__ import annotations

import json
import re

import pytest

from longtail.cli import main
from longtail.errors import LongtailError
from longtail.study import grid, load_study, shard

# 3 classes x 12 images of 16 px; 6 held out for validation, limit_train 24 of the other 30
TINY = """
name = "ssp"
seeds = [0]
[defaults]
recipe = "seed"
epochs = 1
val_size = 6
limit_train = 24
threads = 1
[[arms]]
name = "ce"
imbalance = "step:2"
[[arms]]
name = "ce-rot-lt"
imbalance = "step:2"
init = "pretrain:rot-lt"
baseline = "ce"
[pretrain.rot-lt]
task = "rotation"
epochs = 1
data_from = "ce"
[pretrain.rot-all]
task = "rotation"
epochs = 1
data_from = "all"
"""


@pytest.fixture
def tiny_data(tiny_folder, tmp_path):
    return tiny_folder(tmp_path / "data", classes=3, per_class=12, size=16)


def _study(tmp_path, text: str, **kw):
    (tmp_path / "s.toml").write_text(text)
    return load_study(tmp_path / "s.toml", data="x", out=tmp_path / "out", **kw)


def _run(tmp_path, data, text: str, *extra: str) -> int:
    (tmp_path / "s.toml").write_text(text)
    return main(["study", str(tmp_path / "s.toml"), "--data", str(data), "--out", str(tmp_path / "out"), "--quiet",
                 *extra])


def _summary(path) -> dict:
    return json.loads((path / "summary.json").read_text())


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_pretraining_on_an_arms_data_keeps_exactly_its_training_images(tmp_path, tiny_data, workers):
    """data_from = "ce": the same kept indices as the arm (imbalance drawn with the same seed, after
    the same limit_train and validation hold-out); "all": the whole training split. With workers,
    the arm started from rot-lt waits for it."""
    assert _run(tmp_path, tiny_data, TINY, "--workers", workers) == 0
    out = tmp_path / "out"
    arm, lt, everything = (_summary(out / "runs" / "ce" / "seed-0"), _summary(out / "pretrain" / "rot-lt" / "seed-0"),
                           _summary(out / "pretrain" / "rot-all" / "seed-0"))
    assert lt["task"] == "rotation" and lt["kept_indices_hash"] == arm["kept_indices_hash"]
    assert lt["n_train"] == arm["n_train"] == sum(arm["kept_class_counts"]) < 24
    assert everything["n_train"] == 30 and everything["kept_indices_hash"] != arm["kept_indices_hash"]
    config = json.loads((out / "pretrain" / "rot-lt" / "seed-0" / "config.json").read_text())
    assert (config["imbalance"], config["limit_train"], config["val_size"]) == ("step:2", 24, 6)
    transfer = _summary(out / "runs" / "ce-rot-lt" / "seed-0")["transfer"]
    assert transfer["source_kind"] == "rotation" and transfer["pretext_head"] == "fc2"
    assert transfer["checkpoint"] == str(out / "pretrain" / "rot-lt" / "seed-0" / "checkpoint.pt")
    record = json.loads((out / "study.json").read_text())
    assert record["pretrain"]["rot-lt"]["data_from"] == "ce"
    assert [c["arm"] for c in record["cells"]] == ["pretrain:rot-lt", "pretrain:rot-all", "ce", "ce-rot-lt"]


def test_named_pretrainings_have_their_own_folders_groups_and_settings(tmp_path):
    cells = grid(_study(tmp_path, TINY))
    by_arm = {c.arm: c for c in cells}
    lt, everything = by_arm["pretrain:rot-lt"], by_arm["pretrain:rot-all"]
    assert lt.run_dir == tmp_path / "out" / "pretrain" / "rot-lt" / "seed-0"
    assert (lt.config.imbalance, lt.config.limit_train, lt.config.val_size) == ("step:2", 24, 6)
    assert (everything.config.imbalance, everything.config.limit_train, everything.config.val_size) == (None, None, 6)
    dependent = by_arm["ce-rot-lt"]
    assert dependent.needs == "pretrain:rot-lt" and dependent.group == lt.group == ("pretrain:rot-lt", 0)
    assert dependent.config.init == str(lt.run_dir / "checkpoint.pt")
    assert by_arm["ce"].needs is None
    for k in (1, 2):  # a pretraining and the arms started from it stay in one shard
        arms = {c.arm for c in shard(cells, k, 2)}
        assert ("pretrain:rot-lt" in arms) == ("ce-rot-lt" in arms)


def test_the_single_pretrain_table_keeps_its_name_and_folder(tmp_path):
    text = TINY.split("[pretrain.rot-lt]")[0].replace("pretrain:rot-lt", "pretrain") + "[pretrain]\nepochs = 1\n"
    cells = grid(_study(tmp_path, text))
    pre = cells[0]
    assert (pre.kind, pre.arm, pre.group) == ("pretrain", "pretrain", ("pretrain", 0))
    assert pre.run_dir == tmp_path / "out" / "pretrain" / "seed-0"
    # the old form takes nothing from [defaults], as before names existed: old runs still resume
    assert (pre.config.val_size, pre.config.limit_train, pre.config.imbalance) == (None, None, None)
    assert cells[2].config.init == str(pre.run_dir / "checkpoint.pt") and cells[2].needs == "pretrain"
    with_data_from = text.replace("[pretrain]\n", '[pretrain]\ndata_from = "ce"\n')
    assert grid(_study(tmp_path, with_data_from))[0].config.imbalance == "step:2"


@pytest.mark.parametrize("change, message", [
    (('data_from = "ce"', 'data_from = "cee"'),
     "data_from = 'cee' in [pretrain.rot-lt] of .* is not one of its arms (ce, ce-rot-lt) or \"all\""),
    (('init = "pretrain:rot-lt"', 'init = "pretrain:rot"'),
     "arm 'ce-rot-lt' of .* has init = \"pretrain:rot\" but the file has no [pretrain.rot] table (its pretrainings: "
     "pretrain:rot-lt, pretrain:rot-all)"),
    (('init = "pretrain:rot-lt"', 'init = "pretrain"'), "has init = \"pretrain\" but the file has no [pretrain] table"),
    (('data_from = "all"', 'data_from = "all"\nval_size = 3'),
     "key 'val_size' in [pretrain.rot-all] of .*: data_from = 'all' decides the pretraining's images"),
    (('data_from = "ce"', 'data_from = "ce"\nimbalance = "step:3"'), "key 'imbalance' in [pretrain.rot-lt]"),
    (('[pretrain.rot-lt]', '[pretrain]\nepochs = 2\n[pretrain.rot-lt]'),
     "[pretrain] in .* holds both keys ('epochs') and named tables"),
    (('[pretrain.rot-all]', '[pretrain.seed-1]'), "may not be named like a seed folder"),
    (('[pretrain.rot-all]', '[pretrain.rot-all]\nseed = 4'), "key 'seed' in [pretrain.rot-all] .* is set by the study"),
    (('data_from = "ce"', 'data_from = "ce"\nmodel = "resnet32"'),
     "arm 'ce-rot-lt' of .* trains seed-cnn from pretrain:rot-lt, a rotation net of resnet32: they share no layer"),
    (('name = "ce-rot-lt"', 'name = "ce-rot-lt"\nmodel = "resnet32"'),
     "arm 'ce-rot-lt' of .* trains resnet32 from pretrain:rot-lt, a rotation net of seed-cnn"),
])
def test_bad_pretrainings_are_one_line_errors_before_anything_runs(tmp_path, tiny_data, capsys, change, message):
    text = TINY.replace(*change)
    assert text != TINY
    assert _run(tmp_path, tiny_data, text) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("longtail: error:"), err
    assert re.search(re.escape(message).replace(re.escape(".*"), ".*"), err), err
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_a_jigsaw_pretraining_into_another_model_is_refused_when_the_file_is_read(tmp_path):
    jigsaw = TINY.replace('task = "rotation"\nepochs = 1\ndata_from = "ce"', 'epochs = 1\ndata_from = "ce"')
    assert grid(_study(tmp_path, jigsaw))[0].config.task == "jigsaw"  # into the seed CNN: fine
    text = jigsaw.replace('name = "ce-rot-lt"', 'name = "ce-rot-lt"\nmodel = "resnet32"')
    with pytest.raises(LongtailError, match="trains resnet32 from pretrain:rot-lt, a jigsaw net of seed-cnn: they "
                                            "share no layer"):
        _study(tmp_path, text)
    both = text.replace('data_from = "ce"', 'data_from = "ce"\nmodel = "resnet32"')
    assert grid(_study(tmp_path, both))[0].config.model == "resnet32"  # ResNet-32's jigsaw trunk: fine


def test_a_pretraining_the_task_refuses_stops_the_study_before_any_run(tmp_path, tiny_data, capsys):
    text = TINY.replace('task = "rotation"\nepochs = 1\ndata_from = "all"', 'epochs = 1\ndata_from = "all"\n'
                        'jigsaw_head = "classify"\npermutations = 25')
    assert _run(tmp_path, tiny_data, text) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pretrain:rot-all seed 0: " in err and "permutations" in err, err
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize("name, model", [("ssp-long-tail", "seed-cnn"), ("ssp-long-tail-resnet32", "resnet32")])
def test_the_long_tail_ssp_presets(tmp_path, name, model):
    from pathlib import Path

    study = load_study(Path(__file__).resolve().parents[1] / "configs" / f"{name}.toml", out=tmp_path)
    assert study.seeds == [0, 1, 2] and study.baseline == "ce"
    pretrained = {f"{loss}-{p}": loss for loss in ("ce", "balanced-softmax")
                  for p in ("rotation-lt", "jigsaw-lt", "rotation-all")}
    assert [a for a, _ in study.arms] == ["ce", *list(pretrained)[:3], "balanced-softmax", *list(pretrained)[3:]]
    assert {a: b for a, b in study.baselines.items() if a in pretrained} == pretrained  # each with its twin
    cells = grid(study)
    train = [c for c in cells if c.kind == "train"]
    assert {(c.config.model, c.config.recipe, c.config.epochs, c.config.label_smoothing, c.config.imbalance)
            for c in train} == {(model, "fast", 20, 0.0, "exponential:100")}
    pre = {c.arm: c.config for c in cells if c.kind == "pretrain" and c.seed == 0}
    assert {k: (p.task, p.model, p.imbalance, p.recipe) for k, p in pre.items()} == {
        "pretrain:rotation-lt": ("rotation", model, "exponential:100", "improved"),
        "pretrain:jigsaw-lt": ("jigsaw", model, "exponential:100", "improved"),
        "pretrain:rotation-all": ("rotation", model, None, "improved")}
    by_arm = {c.arm: c for c in train if c.seed == 1}
    assert by_arm["balanced-softmax-jigsaw-lt"].needs == "pretrain:jigsaw-lt"
    assert by_arm["ce-rotation-all"].config.init == str(tmp_path / "pretrain" / "rotation-all" / "seed-1" /
                                                        "checkpoint.pt")


def test_the_balanced_ssp_preset(tmp_path):
    from pathlib import Path

    study = load_study(Path(__file__).resolve().parents[1] / "configs" / "ssp-balanced.toml", out=tmp_path)
    cells = grid(study)
    assert [a for a, _ in study.arms] == ["random-init", "rotation-init"]
    assert {c.config.imbalance for c in cells} == {None} and study.seeds == [0, 1, 2]
    assert {c.config.epochs for c in cells if c.kind == "train"} == {20}
    assert {c.arm: (c.config.task, c.config.epochs) for c in cells if c.kind == "pretrain"} == {
        "pretrain:rotation": ("rotation", 5)}


def test_a_single_pretrain_study_made_before_these_settings_existed_still_resumes(tmp_path, tiny_data):
    """Its pretraining's config.json has no imbalance or model (PretrainConfig lacked them): they
    match while they have their defaults, so the finished study is reused, not refused."""
    text = (TINY.split("[pretrain.rot-lt]")[0].replace("pretrain:rot-lt", "pretrain")
            + '[pretrain]\ntask = "rotation"\nepochs = 1\n')
    assert _run(tmp_path, tiny_data, text) == 0
    folder = tmp_path / "out" / "pretrain" / "seed-0"
    config = json.loads((folder / "config.json").read_text())
    older = {k: v for k, v in config.items() if k not in ("imbalance", "model")}
    (folder / "config.json").write_text(json.dumps(older))
    summary = (folder / "summary.json").read_text()
    assert _run(tmp_path, tiny_data, text) == 0
    assert (folder / "summary.json").read_text() == summary
