"""The NNX built-in models (jaxfw/models/nnx_models.py) are their Linen counterparts in
NNX form: the same parameter shapes, count and logical axis names, the same initial-value
distributions, the same outputs for the same weights; train/eval mode through
`module.train()` / `module.eval()`; their configs pass the `_target_` check and build."""

from collections import Counter

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hydra.utils import instantiate
from omegaconf import OmegaConf

import jaxfw
from jaxfw.config.paths import conf_dir
from jaxfw.errors import UserError
from jaxfw.models import MLP, NnxMLP, NnxTransformer, Transformer
from jaxfw.models.targets import check_model_targets

MLP_ARGS = {"num_outputs": 5, "hidden": (32, 16), "dropout": 0.5}
LM_ARGS = {"num_outputs": 40, "num_layers": 2, "embed_dim": 32, "num_heads": 4}
LM_ARGS |= {"mlp_dim": 64, "max_length": 12, "dropout": 0.5, "attention": "xla"}
IMAGES = jnp.linspace(-1, 1, 3 * 4 * 6).reshape(3, 4, 6)  # flattened: 24 features
TOKENS = jnp.arange(2 * 12).reshape(2, 12) % 40


def _linen(module: nn.Module, inputs: jax.Array) -> dict:
    """Linen's params, still boxed with their logical axis names."""
    return module.init({"params": jax.random.key(0)}, inputs)["params"]


def _linen_leaves(params: dict) -> list[tuple[tuple[int, ...], tuple, jax.Array]]:
    boxes = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    return [(box.value.shape, tuple(box.names), box.value) for box in boxes]


def _nnx_leaves(module: nnx.Module) -> list[tuple[tuple[int, ...], tuple, jax.Array]]:
    flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
    return [
        (v.get_value().shape, tuple(v.get_metadata()["out_sharding"]), v.get_value())
        for _, v in flat
    ]


def _pairs():
    mlp = (MLP(**MLP_ARGS), NnxMLP(**MLP_ARGS, in_features=24, rngs=nnx.Rngs(0)), IMAGES)
    lm = (Transformer(**LM_ARGS), NnxTransformer(**LM_ARGS, rngs=nnx.Rngs(0)), TOKENS)
    return {"mlp": mlp, "transformer": lm}


@pytest.fixture(scope="module")
def pairs():
    return _pairs()


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_parameters_have_linen_shapes_count_and_logical_axes(pairs, name):
    linen, module, inputs = pairs[name]
    expected = _linen_leaves(_linen(linen, inputs))
    got = _nnx_leaves(module)
    # Every weight's (shape, logical axes), with multiplicity: paths differ, names do not.
    assert Counter((s, a) for s, a, _ in got) == Counter((s, a) for s, a, _ in expected)
    count = sum(int(np.prod(s)) for s, _, _ in got)
    assert count == sum(int(np.prod(s)) for s, _, _ in expected) > 0
    assert len(got) == len(jax.tree.leaves(nnx.state(module, nnx.Param)))  # all named


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_initial_values_follow_linen_distributions(pairs, name):
    """Per (shape, axes) group: the same mean and spread (ones/zeros exactly)."""
    linen, module, inputs = pairs[name]

    def groups(leaves):
        out: dict = {}
        for shape, axes, value in leaves:
            out.setdefault((shape, axes), []).append(np.ravel(value))
        return {k: np.concatenate(v) for k, v in out.items()}

    expected, got = groups(_linen_leaves(_linen(linen, inputs))), groups(_nnx_leaves(module))
    for key, values in expected.items():
        std = float(values.std())
        assert got[key].std() == pytest.approx(std, rel=0.15, abs=1e-7), key
        assert got[key].mean() == pytest.approx(float(values.mean()), abs=0.2 * std + 1e-7), key


def _mlp_from_linen(module: NnxMLP, params: dict) -> None:
    dense = [params[f"Dense_{i}"] for i in range(len(params))]
    for layer, p in zip([*module.layers, module.head], dense, strict=True):
        layer.kernel.set_value(p["kernel"])
        layer.bias.set_value(p["bias"])


def _lm_from_linen(module: NnxTransformer, params: dict) -> None:
    def norm(target, p):
        target.scale.set_value(p["LayerNorm_0"]["scale"])
        target.bias.set_value(p["LayerNorm_0"]["bias"])

    def linear(target, p):
        target.kernel.set_value(p["kernel"])
        target.bias.set_value(p["bias"])

    module.embed.embedding.set_value(params["Embed_0"]["embedding"])
    module.positions.set_value(params["positions"])
    for i, block in enumerate(module.blocks):
        p = params[f"_Block_{i}"]
        norm(block.attention_norm, p["_LayerNorm_0"])
        for name in ("query", "key", "value", "out"):
            getattr(block.self_attention, name).set_value(p["_Attention_0"][name]["kernel"])
        norm(block.mlp_norm, p["_LayerNorm_1"])
        linear(block.mlp_in, p["Dense_0"])
        linear(block.mlp_out, p["Dense_1"])
    norm(module.final_norm, params["_LayerNorm_0"])
    linear(module.head, params["Dense_0"])


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_same_weights_give_linen_outputs(name):
    """Linen's weights copied in: the same logits (eval mode), so both train alike."""
    linen, module, inputs = _pairs()[name]
    params = nn.meta.unbox(_linen(linen, inputs))
    (_mlp_from_linen if name == "mlp" else _lm_from_linen)(module, params)
    module.eval()
    expected = linen.apply({"params": params}, inputs)
    got = module(inputs)
    assert got.shape == expected.shape
    assert got.shape == ((3, 5) if name == "mlp" else (2, 12, 40))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["mlp", "transformer"])
def test_eval_is_deterministic_and_train_draws_dropout(name):
    _, _, inputs = _pairs()[name]

    def build(dropout_seed: int) -> nnx.Module:
        rngs = nnx.Rngs(params=0, dropout=dropout_seed)
        if name == "mlp":
            return NnxMLP(**MLP_ARGS, in_features=24, rngs=rngs)
        return NnxTransformer(**LM_ARGS, rngs=rngs)

    a, b = build(1), build(2)
    a.eval()
    b.eval()
    assert np.array_equal(a(inputs), a(inputs)) and np.array_equal(a(inputs), b(inputs))
    a.train()
    b.train()
    assert not np.allclose(a(inputs), b(inputs))  # different dropout streams
    assert not np.allclose(a(inputs), a(inputs))  # the stream advances between calls


def test_a_bad_attention_value_is_one_sentence():
    with pytest.raises(UserError, match=r"^model.attention='fast' is not allowed; use auto"):
        NnxTransformer(**{**LM_ARGS, "attention": "fast"}, rngs=nnx.Rngs(0))


def test_exports_attention_override_reaches_the_kernel_not_the_blocks():
    """export/program.py sets attention="xla" on every submodule that has the attribute."""
    module = NnxTransformer(**{**LM_ARGS, "attention": "auto"}, rngs=nnx.Rngs(0))
    module.set_attributes(attention="xla", raise_if_not_found=False)
    assert module.attention == "xla"
    assert all(block.self_attention.attention == "xla" for block in module.blocks)
    module.eval()
    assert module(TOKENS).shape == (2, 12, 40)


@pytest.mark.parametrize(
    ("option", "linen_option"), [("nnx_mlp", "mlp"), ("nnx_transformer", "transformer")]
)
def test_configs_pass_the_target_check_and_build(option, linen_option):
    nnx_cfg = jaxfw.compose(None, [f"model={option}"]).model
    linen_keys = set(OmegaConf.load(conf_dir() / "model" / f"{linen_option}.yaml"))
    # The Linen option's keys; the MLP adds in_features (NNX builds its first layer up front).
    assert set(nnx_cfg) - {"in_features"} == linen_keys
    cls = check_model_targets(nnx_cfg)
    assert cls is (NnxMLP if option == "nnx_mlp" else NnxTransformer)
    # What the run fills in from the data.
    data = {"in_features": 24} if option == "nnx_mlp" else {"max_length": 8}
    filled = OmegaConf.merge(nnx_cfg, {"num_outputs": 7, **data})
    module = instantiate(filled, _convert_="all", rngs=nnx.Rngs(0))
    assert isinstance(module, cls) and module.num_outputs == 7
