import pytest

import dataclasses

from longtail.config import RECIPES, RECIPES_OF, PretrainConfig, TrainConfig, resolve_train_config
from longtail.errors import LongtailError


def test_recipe_defaults_then_toml_then_cli(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('recipe = "seed"\nepochs = 7\nbatch_size = 32\naugment = ["flip"]\n')
    cfg = resolve_train_config({"epochs": 3, "lr": None}, toml)
    assert cfg.recipe == "seed" and cfg.optimizer == "adam" and cfg.lr == RECIPES["seed"]["lr"]
    assert cfg.epochs == 3 and cfg.batch_size == 32 and cfg.augment == ["flip"]


def test_fast_is_the_default_recipe():
    cfg = resolve_train_config({})
    assert cfg.recipe == "fast" and cfg.optimizer == "sgd" and cfg.schedule == "onecycle"


@pytest.mark.parametrize("text,needle", [
    ("epochz = 3", "unknown key 'epochz'"),
    ('epochs = "three"', "epochs"),
    ("epochs = 0", "epochs in"),
    ("epochs = 0", "must be >= 1"),
    ('optimizer = "rmsprop"', "unknown optimizer 'rmsprop'"),
    ('optimizer = "rmsprop"', "choose from adam, sgd"),
    ('recipe = "slow"', "unknown recipe 'slow'"),
    ("epochs = [", "not valid TOML"),
    ("label_smoothing = 1.5", "must be >= 0 and < 1"),
    ("lr = nan", "must be a finite number"),
    ("lr = inf", "must be a finite number"),
    ("lr = 1e308", "<= 100"),
    ("seed = 18446744073709551615", "<= 4294967295"),
    ("seed = -1", ">= 0"),
    ('loss = "nope"', "unknown loss 'nope'"),
    ('rebalance = "nope"', "unknown rebalance method 'nope'"),
    ('augment = ["crop", "spin"]', "unknown augmentation 'spin'"),
    ('imbalance = "zipf:3"', "unknown imbalance profile 'zipf'"),
    ('transfer_layers = ["fc9"]', "unknown"),
    ('quiet = "yes"', "quiet"),
])
def test_bad_toml_names_the_key(tmp_path, text, needle):
    toml = tmp_path / "bad.toml"
    toml.write_text(text + "\n")
    with pytest.raises(LongtailError) as e:
        resolve_train_config({}, toml)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_int_accepted_where_float_expected():
    assert resolve_train_config({"lr": 1}).lr == 1.0


def test_toml_that_is_not_utf8_is_one_line(tmp_path):
    toml = tmp_path / "latin1.toml"
    toml.write_bytes('recipe = "s\xe9ed"\n'.encode("latin-1"))
    with pytest.raises(LongtailError, match="not UTF-8"):
        resolve_train_config({}, toml)


@pytest.mark.parametrize("cls", [TrainConfig, PretrainConfig])
def test_every_setting_has_help_and_every_choice_list_comes_from_the_code(cls):
    from longtail.settings import choice_names, help_text, settings_of

    for name, spec in settings_of(cls).items():
        assert len(spec.help) > 10, name
        text = help_text(cls, name, RECIPES_OF[cls])
        assert "default" in text, name
        for choice in choice_names(spec):
            assert choice in text, (name, choice)
    assert set(settings_of(cls)) == {f.name for f in dataclasses.fields(cls)}


def test_choices_are_the_registries():
    from longtail.data.augment import AUGMENTATIONS
    from longtail.data.rebalance import REBALANCERS, register_rebalancer
    from longtail.losses import LOSSES
    from longtail.settings import choice_names, settings_of

    specs = settings_of(TrainConfig)
    assert choice_names(specs["loss"]) == list(LOSSES)
    assert choice_names(specs["augment"]) == list(AUGMENTATIONS) and "vflip" in AUGMENTATIONS
    register_rebalancer("test-only")(REBALANCERS["none"])  # a new method is a choice at once
    try:
        assert resolve_train_config({"rebalance": "test-only"}).rebalance == "test-only"
    finally:
        del REBALANCERS["test-only"]


def test_run_neutral_keys_are_one_set():
    from longtail.settings import run_neutral_keys

    neutral = {"data", "out", "quiet", "resume", "threads", "checkpoint_every", "device", "precision", "tensorboard"}
    assert run_neutral_keys(TrainConfig) == neutral and run_neutral_keys(PretrainConfig) == neutral


def test_booleans_switch_both_ways(tmp_path):
    from longtail.cli import _cli_values, build_parser

    toml = tmp_path / "q.toml"
    toml.write_text("quiet = true\n")
    ns = build_parser().parse_args(["train", "--config", str(toml), "--no-quiet"])
    assert resolve_train_config(_cli_values(ns, TrainConfig), ns.config).quiet is False
    ns = build_parser().parse_args(["train", "--quiet"])
    assert resolve_train_config(_cli_values(ns, TrainConfig)).quiet is True
