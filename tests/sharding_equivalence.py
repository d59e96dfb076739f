"""Run 20 training steps of the digits recipe and of a small transformer, each as a
Flax Linen and a Flax NNX model, on several meshes; print losses and per-device
parameter bytes as JSON.

Run by tests/test_sharding.py in subprocesses, with and without
XLA_FLAGS=--xla_force_host_platform_device_count=8 (it must be set before JAX loads).
Usage: python tests/sharding_equivalence.py MESH [MESH ...], MESH like 1x1x1 or 2x2x2
(data x fsdp x tensor).
"""

import json
import sys

import jax
import numpy as np
import optax

import jaxfw
from jaxfw import sharding
from jaxfw.config.schema import MeshConfig
from jaxfw.models import ModelFns, NnxModelFns, NnxTransformer, Transformer
from jaxfw.state import create_train_state, state_shardings
from jaxfw.steps import compile_steps
from jaxfw.tasks import LanguageModeling

STEPS = 20
RULES = MeshConfig().rules


def _sizes(mesh: str) -> dict[str, int]:
    data, fsdp, tensor = (int(x) for x in mesh.split("x"))
    return {"data": data, "fsdp": fsdp, "tensor": tensor}


def digits(mesh: str, model: str = "mlp") -> dict:
    sizes = _sizes(mesh)
    overrides = [
        f"trainer.steps={STEPS}",
        "trainer.log_every=1",
        "trainer.eval_every=0",
        "trainer.progress=off",
        "checkpoint.enabled=false",
        "logger.enabled=false",
        f"model={model}",
        "model.dropout=0.0",
        *(f"mesh.{axis}={size}" for axis, size in sizes.items()),
    ]
    result = jaxfw.train(jaxfw.compose("digits_mlp", overrides))
    losses = [r["train/loss"] for r in result.history if "train/loss" in r]
    return {"losses": losses, "param_bytes": sharding.bytes_per_device(result.state.params)}


def transformer(mesh: str, nnx: bool = False) -> dict:
    vocab, length, batch = 64, 16, 16
    sizes = {
        "num_outputs": vocab,
        "num_layers": 2,
        "embed_dim": 32,
        "num_heads": 4,
        "mlp_dim": 64,
        "max_length": length,
    }
    if nnx:
        model = NnxModelFns.from_factory(lambda rngs: NnxTransformer(**sizes, rngs=rngs))
    else:
        model = ModelFns(Transformer(**sizes))
    task = LanguageModeling(vocab)
    schedule = optax.constant_schedule(3e-3)
    tx = optax.adamw(schedule, weight_decay=1e-4)
    device_mesh = sharding.make_mesh(_sizes(mesh))
    tokens = np.random.default_rng(0).integers(0, vocab, (STEPS, batch, length + 1), np.int32)
    batches = [{"inputs": t[:, :-1], "targets": t[:, 1:]} for t in tokens]
    state_sharding = state_shardings(model, tx, batches[0], device_mesh, RULES)
    state = jax.jit(
        lambda: create_train_state(model, tx, jax.random.key(0), batches[0]),
        out_shardings=state_sharding,
    )()
    batch_sharding = sharding.batch_sharding(device_mesh)
    steps = compile_steps(
        model, task, tx, schedule, state_sharding, batch_sharding, sharding.replicated(device_mesh)
    )
    losses = []
    for batch in batches:
        state, metrics = steps.train(state, sharding.put_batch(batch, batch_sharding))
        losses.append(float(metrics["loss"]))
    specs = {
        "/".join(str(getattr(k, "key", k)) for k in path): str(leaf.sharding.spec)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)
    }
    return {
        "losses": losses,
        "param_bytes": sharding.bytes_per_device(state.params),
        "specs": specs,
    }


if __name__ == "__main__":
    out = {
        mesh: {
            "digits": digits(mesh),
            "transformer": transformer(mesh),
            "nnx_digits": digits(mesh, "nnx_mlp"),
            "nnx_transformer": transformer(mesh, nnx=True),
        }
        for mesh in sys.argv[1:]
    }
    print(json.dumps(out))
