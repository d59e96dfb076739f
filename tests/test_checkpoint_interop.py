"""Checkpoints are plain Orbax: readable without jaxfw, and restorable onto another topology.

Real checkpoints, no mocks. The reading side always runs in a fresh subprocess: one that
never imports jaxfw (interop), or one with a different device count (resharding; the fake
CPU device count must be set before jax is imported, so it cannot change in-process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxfw

SUBPROCESS_TIMEOUT_S = 180


def _env(tmp_path: Path, devices: int | None) -> dict[str, str]:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["TMPDIR"] = str(tmp_path)
    env.pop("XLA_FLAGS", None)
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _run_python(
    code: str, tmp_path: Path, *args: str, devices: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `code` as a script in a fresh interpreter; fail the test with its output if it fails."""
    script = tmp_path / f"script_{len(list(tmp_path.glob('script_*.py')))}.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=_env(tmp_path, devices),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{script.name} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
        f"\n--- stderr ---\n{proc.stderr[-4000:]}"
    )
    return proc


def _flat(tree) -> dict[str, np.ndarray]:
    """{"Dense_0/kernel": array, ...}: the same names the plain-Orbax reader writes."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(k.key) for k in path): np.asarray(x) for path, x in leaves}


# ------------------------------------------------------------------ interop

# Exactly what a user without jaxfw would write (the README's snippet), plus the checks.
PLAIN_ORBAX_READER = """
import json
import sys

import numpy as np
import orbax.checkpoint as ocp

checkpoints, out = sys.argv[1], sys.argv[2]

# --- snippet ---
mngr = ocp.CheckpointManager(checkpoints)  # <run_dir>/checkpoints
step = mngr.latest_step()
restored = mngr.restore(
    step,
    args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
)
params = restored.state["params"]  # nested dict of arrays: {"Dense_0": {"kernel": ...}}
meta = restored.meta  # dict: run_id, step, metrics, config, data_fingerprint, ...
mngr.close()
# --- end of snippet ---

assert "jaxfw" not in sys.modules, "the plain-Orbax reader imported jaxfw"
flat = {f"{layer}/{name}": np.asarray(x) for layer, d in params.items() for name, x in d.items()}
np.savez(out + ".npz", **flat)
with open(out + ".json", "w") as f:
    json.dump({"step": step, "state_step": int(restored.state["step"]), "meta": meta}, f)
"""


def test_plain_orbax_reads_params_and_meta_without_jaxfw(tmp_path):
    cfg = jaxfw.compose(
        "digits_mlp", ["trainer.steps=20", "trainer.eval_every=10", "trainer.progress=off"]
    )
    result = jaxfw.train(cfg, run_dir=tmp_path / "run")

    out = tmp_path / "read"
    _run_python(PLAIN_ORBAX_READER, tmp_path, str(result.run_dir / "checkpoints"), str(out))

    with np.load(f"{out}.npz") as npz:
        read = {name: npz[name] for name in npz.files}
    expected = _flat(result.state.params)
    assert sorted(read) == sorted(expected) and len(expected) == 6  # 3 Dense layers
    for name, want in expected.items():
        got = read[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tobytes() == want.tobytes(), f"{name} differs from result.state.params"

    info = json.loads(Path(f"{out}.json").read_text())
    assert info["step"] == 20 and info["state_step"] == 20 == int(result.state.step)
    run = json.loads((result.run_dir / "run.json").read_text())
    assert info["meta"]["run_id"] == run["run_id"] == result.run_id
    assert info["meta"]["step"] == 20
    assert info["meta"]["data_fingerprint"] == run["data_fingerprint"]
    assert info["meta"]["config"]["trainer"]["steps"] == 20


# --------------------------------------------------------------- resharding

# Shared by the writer and the readers: the state's shapes, the data and the iterator.
COMMON = """
import sys

import jax
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxfw.checkpoint import Checkpointer, abstract_like
from jaxfw.data import Split, train_iterator
from jaxfw.state import TrainState

directory, expected_file = sys.argv[1], sys.argv[2]
SHAPES = {"w1": (64, 32), "b1": (32,), "w2": (32, 16)}
tx = optax.adam(1e-3)


def iterator():
    rng = np.random.default_rng(7)
    split = Split(
        rng.normal(size=(40, 3)).astype(np.float32), rng.integers(0, 4, 40).astype(np.int32)
    )
    return train_iterator(split, batch_size=8, seed=3)


def make_state(values, shardings):
    params = {k: jax.device_put(values[k], shardings[k]) for k in SHAPES}
    return TrainState(
        step=jax.numpy.asarray(values["step"]),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.key_data(jax.random.key(11)),  # raw, as TrainState keeps it
    )
"""

WRITE_SHARDED = (
    COMMON
    + """
assert jax.device_count() == 8
mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
shardings = {k: NamedSharding(mesh, P("data") if len(s) == 2 else P()) for k, s in SHAPES.items()}
rng = np.random.default_rng(0)
values = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
values["step"] = np.int32(5)
state = make_state(values, shardings)
assert state.params["w1"].addressable_shards[0].data.shape == (8, 32)  # really sharded
assert len(state.params["w1"].sharding.device_set) == 8

batches = iterator()
for _ in range(7):  # into the second epoch (5 batches per epoch)
    next(batches)
checkpointer = Checkpointer(directory)
checkpointer.save(5, state, batches, {"note": "sharded over 8"}, wait=True)
checkpointer.close()
following = next(batches)  # what a resumed iterator must produce next
np.savez(
    expected_file,
    **values,
    next_inputs=following["inputs"],
    next_targets=following["targets"],
    rng_data=np.asarray(state.rng),
)
"""
)

# Runs after COMMON and a setup that defines the target's SHARDINGS and SHARD_SHAPES.
RESTORE = """
expected = np.load(expected_file)
zeros = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
target = make_state({**zeros, "step": 0}, SHARDINGS)
batches = iterator()
checkpointer = Checkpointer(directory, read_only=True)
step, state, meta = checkpointer.restore(abstract_like(target), batches)
assert step == 5 and meta["note"] == "sharded over 8", (step, meta)
assert int(state.step) == 5
np.testing.assert_array_equal(np.asarray(state.rng), expected["rng_data"])

for name, sharding in SHARDINGS.items():
    array = state.params[name]
    np.testing.assert_array_equal(np.asarray(array), expected[name])
    assert array.sharding == sharding, (name, array.sharding, sharding)
    shapes = {shard.data.shape for shard in array.addressable_shards}
    assert shapes == {SHARD_SHAPES[name]}, (name, shapes)
    assert len(array.addressable_shards) == jax.device_count()
    for shard in array.addressable_shards:  # each device holds its own slice of the values
        np.testing.assert_array_equal(np.asarray(shard.data), expected[name][shard.index])
    # Adam's moments follow the target's shardings too (zeros: nothing was trained).
    for moment in (state.opt_state[0].mu[name], state.opt_state[0].nu[name]):
        assert moment.sharding == sharding and not np.asarray(moment).any()

following = next(batches)
np.testing.assert_array_equal(following["inputs"], expected["next_inputs"])
np.testing.assert_array_equal(following["targets"], expected["next_targets"])
checkpointer.close()
print("restored", jax.device_count(), "devices")
"""

ONE_DEVICE = """
assert jax.device_count() == 1
mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
SHARDINGS = {k: NamedSharding(mesh, P()) for k in SHAPES}
SHARD_SHAPES = dict(SHAPES)
"""

OTHER_MESH = """
assert jax.device_count() == 8
mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
SHARDINGS = {
    "w1": NamedSharding(mesh, P(None, "model")),
    "b1": NamedSharding(mesh, P("model")),
    "w2": NamedSharding(mesh, P("data", None)),
}
SHARD_SHAPES = {"w1": (64, 8), "b1": (8,), "w2": (16, 16)}
"""


# Plain Orbax on any topology (no jaxfw): a target built from the saved metadata puts every
# array on this process's first device, whatever mesh wrote it.
PLAIN_ORBAX_ANY_TOPOLOGY = """
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

checkpoints, expected_file = sys.argv[1], sys.argv[2]

# --- snippet ---
mngr = ocp.CheckpointManager(checkpoints)
step = mngr.latest_step()
saved = ocp.StandardCheckpointer().metadata(f"{checkpoints}/{step}/state").item_metadata
here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), saved)
restored = mngr.restore(
    step,
    args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
)
params, meta = restored.state["params"], restored.meta
mngr.close()
# --- end of snippet ---

assert "jaxfw" not in sys.modules, "the plain-Orbax reader imported jaxfw"
assert jax.device_count() == 1 and step == 5 and meta["note"] == "sharded over 8", (step, meta)
expected = np.load(expected_file)
for name, array in params.items():
    assert array.sharding == here, (name, array.sharding)
    np.testing.assert_array_equal(np.asarray(array), expected[name])
print("read", sorted(params))
"""


@pytest.fixture(scope="module")
def sharded_checkpoint(tmp_path_factory) -> tuple[str, str]:
    """(checkpoints dir, expected values .npz) of a state saved sharded over 8 devices."""
    tmp_path = tmp_path_factory.mktemp("sharded")
    directory, expected = tmp_path / "checkpoints", tmp_path / "expected.npz"
    _run_python(WRITE_SHARDED, tmp_path, str(directory), str(expected), devices=8)
    assert (directory / "5" / "state").is_dir() and expected.exists()
    return str(directory), str(expected)


def test_checkpoint_sharded_over_8_devices_restores_onto_1_device(sharded_checkpoint, tmp_path):
    proc = _run_python(COMMON + ONE_DEVICE + RESTORE, tmp_path, *sharded_checkpoint)
    assert "restored 1 devices" in proc.stdout


def test_checkpoint_sharded_over_8_devices_restores_onto_a_2x4_mesh(sharded_checkpoint, tmp_path):
    proc = _run_python(COMMON + OTHER_MESH + RESTORE, tmp_path, *sharded_checkpoint, devices=8)
    assert "restored 8 devices" in proc.stdout


def test_plain_orbax_reads_a_sharded_checkpoint_on_1_device(sharded_checkpoint, tmp_path):
    proc = _run_python(PLAIN_ORBAX_ANY_TOPOLOGY, tmp_path, *sharded_checkpoint)
    assert "read ['b1', 'w1', 'w2']" in proc.stdout
