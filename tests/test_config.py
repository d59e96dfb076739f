"""Config composition: recipes, overrides, the typed schema and one-line errors."""

import re

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import jaxfw
from jaxfw.build import resolve_config
from jaxfw.cli.train import check_overrides
from jaxfw.config.compose import available_recipes
from jaxfw.config.paths import recipes_dir
from jaxfw.config.validate import validate_config
from jaxfw.errors import UserError

RECIPES = ["breast_cancer", "digits_cnn", "digits_mlp", "lm_50m", "lm_tiny"]


def test_recipes_are_discovered():
    assert available_recipes() == RECIPES


def test_default_recipe_is_digits_mlp():
    cfg = jaxfw.compose()
    assert cfg.name == "digits_mlp"
    assert cfg.model._target_ == "jaxfw.models.MLP"
    assert cfg.data.source.name == "digits"


@pytest.mark.parametrize("recipe", RECIPES)
def test_each_recipe_composes_validates_and_documents_itself(recipe):
    cfg = jaxfw.compose(recipe)
    validate_config(cfg)
    assert cfg.name == recipe
    header = (recipes_dir() / f"{recipe}.yaml").read_text().split("defaults:")[0]
    for field in ("command:", "runtime:", "expected:"):
        assert field in header, f"{recipe}.yaml header lacks '{field}'"
    assert re.search(r"test/(accuracy|bits_per_byte) ~?\d+\.\d+", header)


def test_composite_overrides_take_effect():
    cfg = jaxfw.compose(
        "digits_cnn", ["optimizer=sgd", "optimizer.lr=0.05", "trainer.steps=300", "seed=3"]
    )
    assert cfg.model._target_ == "jaxfw.models.CNN"
    assert cfg.optimizer.name.name == "sgd" and cfg.optimizer.momentum == 0.9
    assert cfg.optimizer.lr == 0.05 and cfg.trainer.steps == 300 and cfg.seed == 3


def test_compose_leaves_no_global_hydra_state():
    jaxfw.compose("digits_mlp")
    assert not GlobalHydra.instance().is_initialized()
    assert jaxfw.compose("breast_cancer").name == "breast_cancer"


def test_resolved_config_is_plain_and_complete():
    cfg = resolve_config(jaxfw.compose("digits_mlp"))
    text = OmegaConf.to_yaml(cfg)
    assert "${" not in text
    assert cfg.optimizer.name == "adamw"  # enums become their names
    assert re.fullmatch(r"runs/digits_mlp/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-[0-9a-f]{6}", cfg.run_dir)


def test_two_composes_in_the_same_second_get_distinct_run_dirs():
    first = resolve_config(jaxfw.compose()).run_dir
    second = resolve_config(jaxfw.compose()).run_dir
    assert first != second


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer.stpes=5"], ["'trainer.stpes'", "did you mean 'trainer.steps'", "batch_size"]),
        (["trainer.steps=abc"], ["'abc'", "'trainer.steps'", "integer"]),
        (["optimizer.lr=fast"], ["'fast'", "'optimizer.lr'", "number"]),
        (["optimizer=adamm"], ["optimizer 'adamm'", "adam, adamw, sgd"]),
        (["recipe=nope"], ["recipe 'nope'", "breast_cancer, digits_cnn, digits_mlp"]),
        (["trainer.progress=loud"], ["'loud'", "'trainer.progress'", "auto, bar, log, off"]),
        (["model.widht=3"], ["'model.widht'", "+model.widht"]),
        (["trainer.steps=1,2"], ["'trainer.steps=1,2'", "-m"]),
        (["trainer.steps=="], ["override 'trainer.steps=='", "key=value"]),
        (["3"], ["override '3'", "key=value", "group=option"]),
        (["trainer steps=3"], ["override 'trainer steps=3'", "one per argument"]),
    ],
)
def test_composition_mistakes_are_one_sentence(overrides, expected):
    with pytest.raises(UserError) as err:
        validate_config(jaxfw.compose(overrides=overrides))
    message = str(err.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["+trainer.warmup=3"], "'trainer.warmup'"),
        (["trainer.steps=0"], "'trainer.steps': must be at least 1"),
        (["optimizer.lr=-1"], "'optimizer.lr'"),
        (["data.test_fraction=1.5"], "'data.test_fraction'"),
        (["optimizer.clip_grad_norm=0"], "'optimizer.clip_grad_norm'"),
    ],
)
def test_semantic_checks_name_the_bad_value(overrides, expected):
    with pytest.raises(UserError, match=re.escape(expected)):
        validate_config(jaxfw.compose(overrides=overrides))


def test_sweeps_are_checked_value_by_value():
    check_overrides(["-m", "optimizer.lr=1e-3,3e-3"])
    with pytest.raises(UserError, match=re.escape("'abc' for 'optimizer.lr'")):
        check_overrides(["-m", "optimizer.lr=1e-3,abc"])


def test_typed_values_are_validated_on_assignment_too():
    cfg = jaxfw.compose()
    with pytest.raises(Exception, match="steps"):
        cfg.trainer.steps = "many"
