import pytest

from longtail.config import RECIPES, resolve_train_config
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
    ("epochs = 0", "must be positive"),
    ('optimizer = "rmsprop"', "must be one of adam, sgd"),
    ('recipe = "slow"', "unknown recipe 'slow'"),
    ("epochs = [", "not valid TOML"),
    ("label_smoothing = 1.5", "below 1"),
])
def test_bad_toml_names_the_key(tmp_path, text, needle):
    toml = tmp_path / "bad.toml"
    toml.write_text(text + "\n")
    with pytest.raises(LongtailError) as e:
        resolve_train_config({}, toml)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_int_accepted_where_float_expected():
    assert resolve_train_config({"lr": 1}).lr == 1.0
