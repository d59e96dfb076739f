"""Meshes and sharding rules; DP / FSDP / DP x FSDP x TP equivalence on 8 CPU devices."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxfw.config.schema import MeshConfig
from jaxfw.errors import UserError
from jaxfw.sharding import make_mesh, mesh_shape, spec_for

SCRIPT = Path(__file__).with_name("sharding_equivalence.py")
TOLERANCE = 1e-5  # relative, per step, on the training loss
RULES = MeshConfig().rules


@pytest.mark.parametrize(
    ("sizes", "devices", "expected"),
    [
        ({"data": -1, "fsdp": 1, "tensor": 1}, 8, (8, 1, 1)),
        ({"data": 2, "fsdp": -1, "tensor": 2}, 8, (2, 2, 2)),
        ({"data": 1, "fsdp": 4, "tensor": 2}, 8, (1, 4, 2)),
    ],
)
def test_mesh_shape_fills_the_free_axis(sizes, devices, expected):
    assert mesh_shape(sizes, devices) == expected


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"data": 3, "fsdp": 1, "tensor": 1}, "has 3 devices but 8 are available"),
        ({"data": -1, "fsdp": -1, "tensor": 1}, "Only one mesh axis may be -1"),
        ({"data": -1, "fsdp": 3, "tensor": 1}, "mesh.data=-1 cannot fill 8 devices"),
        ({"data": 0, "fsdp": 1, "tensor": 1}, "Invalid mesh.data=0"),
    ],
)
def test_mesh_mistakes_are_one_sentence(sizes, message):
    with pytest.raises(UserError, match=message):
        mesh_shape(sizes, 8)


class _FakeMesh:
    def __init__(self, **shape):
        self.shape = shape


def test_specs_follow_rules_and_fall_back_when_not_divisible():
    mesh = _FakeMesh(data=2, fsdp=2, tensor=2)
    assert spec_for((64, 256), ("embed", "mlp"), mesh, RULES) == P("fsdp", "tensor")
    assert spec_for((64, 10), ("mlp", "vocab"), mesh, RULES) == P("tensor", "fsdp") or spec_for(
        (64, 10), ("mlp", "vocab"), mesh, RULES
    ) == P("fsdp", "tensor")
    assert spec_for((63, 5), ("embed", "vocab"), mesh, RULES) == P(None, None)  # nothing divides
    assert spec_for((6, 40), None, mesh, RULES) == P(None, "fsdp")  # unannotated: largest dim
    assert spec_for((), None, mesh, RULES) == P()
    one = _FakeMesh(data=1, fsdp=1, tensor=1)
    assert spec_for((64, 256), ("embed", "mlp"), one, RULES) == P(None, None)


def test_batch_size_must_divide_over_the_data_axes(tmp_path):
    import jaxfw

    cfg = jaxfw.compose("digits_mlp", ["trainer.batch_size=7", "mesh.data=1"])
    mesh = make_mesh(cfg.mesh)
    assert mesh.shape["data"] == jax.device_count()
    if jax.device_count() == 1:  # the check itself is covered in the 8-device run below
        from jaxfw.sharding import check_batch_size

        check_batch_size("trainer.batch_size", 7, mesh)


def _run(meshes: list[str], devices: int) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *meshes], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


MODELS = ("digits", "transformer", "nnx_digits", "nnx_transformer")


@pytest.mark.slow
def test_dp_fsdp_tp_match_one_device_and_fsdp_splits_memory():
    """Linen and NNX models alike: the same losses on every mesh, parameters split by
    their logical axes (nn.with_logical_partitioning / nnx.with_partitioning)."""
    single = _run(["1x1x1"], 1)["1x1x1"]
    multi = _run(["8x1x1", "1x8x1", "2x2x2"], 8)
    for mesh, results in multi.items():
        for model in MODELS:
            ref = np.array(single[model]["losses"])
            got = np.array(results[model]["losses"])
            assert len(got) == len(ref) == 20
            rel = np.max(np.abs(got - ref) / np.abs(ref))
            assert rel < TOLERANCE, f"{mesh} {model}: max relative loss difference {rel:.2e}"
    for model in MODELS:
        replicated = max(single[model]["param_bytes"].values())
        assert set(multi["8x1x1"][model]["param_bytes"].values()) == {replicated}
        fsdp = multi["1x8x1"][model]["param_bytes"]
        assert len(fsdp) == 8
        assert max(fsdp.values()) <= replicated / 8 * 1.05, (model, fsdp, replicated)
    specs = multi["2x2x2"]["transformer"]["specs"]
    assert specs["_Block_0/_Attention_0/query/kernel"] == "P('fsdp', 'tensor', None)"
    assert specs["_Block_0/Dense_0/kernel"] == "P('fsdp', 'tensor')"
    nnx_specs = multi["2x2x2"]["nnx_transformer"]["specs"]
    assert nnx_specs["blocks/0/self_attention/query"] == "P('fsdp', 'tensor', None)"
    assert nnx_specs["blocks/0/mlp_in/kernel"] == "P('fsdp', 'tensor')"


@pytest.mark.slow
def test_long_unsynced_multi_device_run_completes(tmp_path):
    """Hundreds of steps between host syncs on 8 CPU devices: XLA's CPU all-reduce
    deadlocks (aborts) with dozens of unfinished steps queued; the loop bounds them."""
    code = (
        "import jaxfw; r = jaxfw.train(jaxfw.compose('digits_mlp', ['trainer.steps=300', "
        "'trainer.log_every=300', 'trainer.eval_every=0', 'trainer.progress=off', "
        "'checkpoint.enabled=false', 'logger.enabled=false', 'mesh.data=8'])); "
        "print(r.metrics['test/accuracy'])"
    )
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) > 0.9
