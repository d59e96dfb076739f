"""A model config's `_target_`s are resolved, never called, before anything is built:
only Flax module classes (and, nested, values from jax/flax/optax/jaxfw.models) pass."""

import sys

import flax.linen as nn
import jax
import pytest
from omegaconf import OmegaConf

from jaxfw.build import build_model
from jaxfw.errors import UserError
from jaxfw.models import MLP, NnxModelFns
from jaxfw.models.targets import check_model_targets

MARKER_MODULE = '''
import pathlib

MARKER = pathlib.Path({marker!r})


def touch(*args, **kwargs):
    """Harmless, but proof that a config made jaxfw call it."""
    MARKER.write_text("called")
'''


@pytest.fixture
def marker(tmp_path, monkeypatch):
    """`marker.touch` importable from PYTHONPATH; returns the file it would create."""
    path = tmp_path / "marker_created"
    (tmp_path / "marker.py").write_text(MARKER_MODULE.format(marker=str(path)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "marker", raising=False)
    return path


def test_builtin_and_nested_library_targets_pass():
    nested = {
        "_target_": "jaxfw.models.MLP",
        "act": {"_target_": "jax.nn.gelu", "_partial_": True},
        "inits": [{"_target_": "flax.linen.initializers.normal", "stddev": 0.02}],
        "dtype": {"_target_": "jax.numpy.bfloat16"},
        "tx": {"_target_": "optax.adam", "learning_rate": 1e-3},
        "_args_": [{"_target_": "jaxfw.models.CNN"}],
    }
    assert check_model_targets(nested) is MLP
    assert check_model_targets(OmegaConf.create({"_target_": "flax.nnx.Linear"})).__name__ == (
        "Linear"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"_target_": "builtins.open", "file": "x"},
            "src.yaml names model._target_='builtins.open', which is not a Flax module class; "
            "jaxfw only builds subclasses of flax.linen.Module",
        ),
        (
            {"_target_": "jaxfw.models.MLP", "x": {"_target_": "jax.numpy.load", "file": "a"}},
            "model.x._target_='jax.numpy.load', which is neither a Flax module class",
        ),
        (
            {"_target_": "jaxfw.models.MLP", "x": [{"_target_": "jax.lax.__spec__.loader.load"}]},
            "model.x[0]._target_='jax.lax.__spec__.loader.load'",
        ),
        (  # a path inside an allowed namespace that reaches the standard library
            {
                "_target_": "jaxfw.models.MLP",
                "x": {"_target_": "flax.linen.module.functools.partial"},
            },
            "model.x._target_='flax.linen.module.functools.partial'",
        ),
        (
            {
                "_target_": "jaxfw.models.MLP",
                "_args_": [{"_target_": "os.system", "_args_": ["id"]}],
            },
            "model._args_[0]._target_='os.system'",
        ),
        (
            {"_target_": "jaxfw.models.MLP", "_args_": {"_target_": "os.system"}},
            "sets model._args_={'_target_': 'os.system'}, which is not allowed; use a list",
        ),
        (
            {"_target_": "jaxfw.models.MLP", "_partial_": True},
            "sets model._partial_=true, which is not allowed for the model",
        ),
        (
            {"_target_": "jaxfw.models.MLP", "a": {"_target_": "jax.nn.relu", "_partial_": "x"}},
            "sets model.a._partial_='x', which is not allowed; use true or false",
        ),
        ({"_target_": ["a"]}, "names model._target_=['a'], which is not a dotted import path"),
        ({"hidden": [3]}, "names no model._target_"),
        ({"_target_": "no_such_module.Net"}, "'no_such_module.Net', which cannot be imported"),
    ],
)
def test_disallowed_targets_are_one_sentence(config, message):
    with pytest.raises(UserError) as info:
        check_model_targets(OmegaConf.create(config), "src.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_callable_is_never_called_top_level_or_nested(marker):
    for config in (
        {"_target_": "marker.touch"},
        {"_target_": "jaxfw.models.MLP", "hidden": [{"_target_": "marker.touch"}]},
    ):
        with pytest.raises(UserError, match=r"_target_='marker\.touch', which is"):
            build_model(OmegaConf.create({**config, "num_outputs": 2}), 2)
    assert not marker.exists()


def test_nothing_is_imported_from_the_standard_library():
    # Importing `this` prints the Zen of Python: the check must not even import it.
    assert "this" not in sys.modules
    with pytest.raises(UserError, match="not a Flax module class"):
        check_model_targets({"_target_": "this.Zen"})
    assert "this" not in sys.modules


def test_code_inside_the_run_directory_is_not_imported(tmp_path, monkeypatch):
    """PYTHONPATH=. with runs/ below: a downloaded run's own .py file must not load."""
    run = tmp_path / "runs" / "downloaded"
    run.mkdir(parents=True)
    imported = tmp_path / "imported"
    (run / "net.py").write_text(
        f"import pathlib\npathlib.Path({str(imported)!r}).write_text('ran')\n"
        "import flax.linen as nn\n\nclass Net(nn.Module):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match=r"'runs\.downloaded\.net\.Net', whose code lies inside"):
        check_model_targets({"_target_": "runs.downloaded.net.Net"}, "c.yaml", run)
    assert not imported.exists()


def test_an_nnx_target_is_built_with_rngs_behind_the_nnx_adapter():
    config = {"_target_": "flax.nnx.Linear", "in_features": 3, "out_features": 2}
    model = build_model(OmegaConf.create(config), 2)
    assert isinstance(model, NnxModelFns)
    variables = model.init(jax.random.key(0), {})
    assert nn.unbox(variables["params"])["kernel"].shape == (3, 2)
