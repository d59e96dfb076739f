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


POSITIVE = "a finite number greater than 0"
POSITIVE_OR_NULL = f"{POSITIVE} (or null to leave it unset)"


@pytest.mark.parametrize(
    ("key", "value", "shown", "rule"),
    [
        ("optimizer.lr", "inf", "inf", POSITIVE),
        ("optimizer.lr", "nan", "nan", POSITIVE),
        ("optimizer.lr", "-1e999", "-inf", POSITIVE),
        ("optimizer.lr", "0", "0.0", POSITIVE),
        ("optimizer.eps", "-1e-8", "-1e-08", POSITIVE),
        ("optimizer.weight_decay", "inf", "inf", "a finite number, 0 or more"),
        ("optimizer.b2", "1", "1.0", "in [0, 1)"),
        ("optimizer.clip_grad_norm", "inf", "inf", POSITIVE_OR_NULL),
        ("trainer.peak_flops", "-5", "-5.0", POSITIVE_OR_NULL),
        ("checkpoint.every_seconds", "nan", "nan", POSITIVE_OR_NULL),
        ("data.scale", "inf", "inf", POSITIVE),
        ("data.val_fraction", "nan", "nan", "strictly between 0 and 1"),
        ("task.label_smoothing", "1", "1.0", "in [0, 1)"),
        ("schedule.final_lr_fraction", "inf", "inf", "in [0, 1]"),
    ],
)
def test_float_settings_must_be_finite_and_in_range(key, value, shown, rule):
    with pytest.raises(UserError) as err:
        validate_config(jaxfw.compose(overrides=[f"{key}={value}"]))
    assert str(err.value) == f"Invalid value {shown} for '{key}': must be {rule}."


def test_optional_float_settings_accept_null_and_good_values():
    cfg = jaxfw.compose(
        overrides=["optimizer.clip_grad_norm=null", "trainer.peak_flops=1e15", "optimizer.eps=1e-6"]
    )
    validate_config(cfg)


NAME_RULE = (
    "runs are filed under runs/<name>/, so it must be a single non-empty directory name "
    "(no '/', '\\', '..' or control characters)."
)


@pytest.mark.parametrize("name", ["", " ", ".", "..", "a/b", "../up", "a\\b", "v1..2"])
def test_name_must_be_one_directory_name(name):
    cfg = jaxfw.compose()
    cfg.name = name
    with pytest.raises(UserError) as err:
        validate_config(cfg)
    assert str(err.value) == f"Invalid value {name!r} for 'name': {NAME_RULE}"


def test_empty_name_on_the_command_line_is_refused():
    with pytest.raises(UserError, match=re.escape(f"Invalid value '' for 'name': {NAME_RULE}")):
        check_overrides(["name="])
    validate_config(jaxfw.compose(overrides=["name=exp.v2"]))


def test_non_ascii_key_is_an_unknown_key_with_a_suggestion():
    with pytest.raises(UserError) as err:
        jaxfw.compose(overrides=["trainer.stëps=5"])
    assert str(err.value).startswith(
        "Unknown config key 'trainer.stëps' (did you mean 'trainer.steps'?); valid keys under "
        "'trainer': steps, batch_size, "
    )
    with pytest.raises(UserError, match=re.escape("'optimïzer' (did you mean 'optimizer'?)")):
        jaxfw.compose(overrides=["optimïzer=adam"])
    with pytest.raises(UserError) as err:
        jaxfw.compose(overrides=["+model.wïdth=3"])
    assert str(err.value) == (
        "Unknown config key 'model.wïdth': config keys are ASCII letters, digits, '_' and '-' only."
    )


def test_non_ascii_value_is_read_when_quoted_and_explained_when_not():
    assert jaxfw.compose(overrides=["name='café'"]).name == "café"
    with pytest.raises(UserError) as err:
        jaxfw.compose(overrides=["name=café"])
    assert str(err.value) == (
        "The value of 'name=café' holds the non-ASCII character 'é', which Hydra reads only "
        "inside quotes: write name='café' (in a shell: \"name='café'\")."
    )
    # What would still be wrong once quoted is what the message says.
    with pytest.raises(UserError, match=re.escape("Invalid value 'fünf' for 'trainer.steps'")):
        jaxfw.compose(overrides=["trainer.steps=fünf"])
    with pytest.raises(UserError, match=re.escape("Unknown optimizer 'adàm' (did you mean 'adam'")):
        jaxfw.compose(overrides=["optimizer=adàm"])
    # A sweep cannot be quoted as a whole: each value is.
    with pytest.raises(UserError) as err:
        check_overrides(["-m", "name=café,thé"])
    assert str(err.value).endswith("put each value that holds it in single quotes, e.g. 'café'.")


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        (["data=table", "data.path=/data/shop.csv", "data.target=label"], "shop"),
        (["data=table", "data.path=sales.csv.gz", "data.target=label"], "sales"),
        (["data=table", "data.path='My Shop (v2).parquet'", "data.target=y"], "My_Shop_v2"),
        (["data=npz", "data.path=arrays/mnist.npz"], "mnist"),
        (["data=text", "data.path=corpus/"], "corpus"),
        (["data=table", "data.path=shop.csv", "name=pricing"], "pricing"),  # name= wins
        (["recipe=breast_cancer", "data=table", "data.path=shop.csv"], "breast_cancer"),
        ([], "digits_mlp"),
    ],
)
def test_runs_on_a_data_file_are_named_after_it(overrides, name):
    cfg = jaxfw.compose(overrides=overrides)
    validate_config(cfg)
    assert cfg.name == name
    run_dir = resolve_config(cfg).run_dir
    assert re.fullmatch(
        rf"runs/{re.escape(name)}/\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d-[0-9a-f]{{6}}", run_dir
    )


def test_sweeps_are_checked_value_by_value():
    check_overrides(["-m", "optimizer.lr=1e-3,3e-3"])
    with pytest.raises(UserError, match=re.escape("'abc' for 'optimizer.lr'")):
        check_overrides(["-m", "optimizer.lr=1e-3,abc"])


def test_typed_values_are_validated_on_assignment_too():
    cfg = jaxfw.compose()
    with pytest.raises(Exception, match="steps"):
        cfg.trainer.steps = "many"
