"""Verified checkpoints: the state digest itself, bytes flipped inside a real checkpoint's
tensor data caught at restore (fallback when resuming, a one-sentence refusal when that
checkpoint was asked for), checkpoints without checksums, and another topology."""

import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import finish_all, launch_jaxfw

import jaxfw
from jaxfw import checkpoint_digest as digest
from jaxfw.checkpoint import CHECKSUMS, Checkpointer, NoCheckpoint, abstract_like
from jaxfw.data import Split, train_iterator
from jaxfw.errors import UserError
from jaxfw.evaluation.run import evaluate_run
from jaxfw.observe import read_jsonl

SHORT = [
    "trainer.steps=30",
    "trainer.eval_every=10",
    "trainer.log_every=5",
    "trainer.progress=off",
    "checkpoint.every_steps=10",
    "checkpoint.keep_last=3",
]


# ------------------------------------------------------------------ the digest
def _flip(tree: dict, name: str, index: int, bit: int) -> dict:
    """`tree` with one bit of element `index` (row-major) of leaf `name` flipped."""
    values = np.array(tree[name])  # a copy
    words = values.reshape(-1).view(f"u{values.dtype.itemsize}")
    words[index] ^= words.dtype.type(1 << bit)
    return {**tree, name: jnp.asarray(values)}


def _leaves_of_each_dtype() -> dict:
    rng = np.random.default_rng(0)
    return {
        # more than one [8, 2048] block plus a tail: both parts of the folded reduction
        "f32": jnp.asarray(rng.standard_normal((130, 257), np.float32)),
        "bf16": jnp.asarray(rng.standard_normal((3, 5, 7), np.float32)).astype(jnp.bfloat16),
        "i32": jnp.asarray(rng.integers(-(2**31), 2**31, 1000), jnp.int32),
        "key": jax.random.key_data(jax.random.key(0)),  # uint32 key data, all zero bits
        "f16": jnp.linspace(-1, 1, 9, dtype=jnp.float16),
        "i8": jnp.arange(-4, 5, dtype=jnp.int8),
        "scalar": jnp.float32(0.5),
    }


@pytest.mark.parametrize("folded", [True, False])
def test_one_flipped_bit_in_any_leaf_changes_that_leafs_digest(folded):
    tree = _leaves_of_each_dtype()
    clean = digest.state_digest(tree, digest.start_state_digest(tree, folded=folded))
    rng = random.Random(0)
    for name, leaf in tree.items():
        bits = leaf.dtype.itemsize * 8
        size = max(leaf.size, 1)
        for index in {0, size - 1, rng.randrange(size)}:
            for bit in {0, bits // 2, bits - 1, rng.randrange(bits)}:
                flipped = _flip(tree, name, index, bit)
                got = digest.state_digest(
                    flipped, digest.start_state_digest(flipped, folded=folded)
                )
                assert got[name] != clean[name], (name, index, bit)
                assert {k: v for k, v in got.items() if k != name} == {
                    k: v for k, v in clean.items() if k != name
                }


def test_every_single_bit_flip_of_a_small_leaf_is_caught():
    # Exhaustive over 4 float32 words and 8 bfloat16 values: 256 flips, none missed.
    for leaf in (
        jnp.asarray([1.0, -2.5, 0.0, 3e-38], jnp.float32),
        jnp.arange(8, dtype=jnp.bfloat16),
    ):
        tree = {"x": leaf}
        clean = digest.state_digest(tree)["x"]
        bits = leaf.dtype.itemsize * 8
        seen = {clean}
        for index in range(leaf.size):
            for bit in range(bits):
                seen.add(digest.state_digest(_flip(tree, "x", index, bit))["x"])
        assert len(seen) == 1 + leaf.size * bits  # each flip gives its own digest


def test_equal_trees_give_equal_digests_and_moved_values_do_not():
    a = {"w": jnp.arange(12.0).reshape(3, 4), "n": {"k": jnp.ones(5, jnp.int32)}}
    b = {"w": jnp.linspace(0.0, 11.0, 12).reshape(3, 4), "n": {"k": jnp.full(5, 1, jnp.int32)}}
    assert digest.state_digest(a) == digest.state_digest(b)
    swapped = {**a, "w": a["w"][::-1]}  # same values, other places
    assert digest.state_digest(swapped)["w"] != digest.state_digest(a)["w"]
    # The top bit flipped in two words: a plain weighted sum of the words would not change.
    top = _flip(_flip(a, "w", 1, 31), "w", 2, 31)
    assert digest.state_digest(top)["w"] != digest.state_digest(a)["w"]


def _reference(words: np.ndarray) -> str:
    """The documented formula in plain NumPy (uint64, reduced mod 2^32 by hand)."""
    m32 = np.uint64(2**32)
    w = words.reshape(-1).astype(np.uint64)
    key = (np.arange(w.size, dtype=np.uint64) * np.uint64(0x9E3779B9)) % m32
    x = (w * ((key ^ (key >> np.uint64(15))) | np.uint64(1)) + key) % m32
    for shift, multiplier in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        x = ((x ^ (x >> np.uint64(shift))) * np.uint64(multiplier)) % m32
    x = x ^ (x >> np.uint64(16))
    return f"{int(x.sum() % m32):08x}"


def test_the_digest_is_the_documented_formula_whichever_reduction():
    # Pinned: a change to the formula would make every checkpoint written before fail.
    pinned = {"a": jnp.arange(10, dtype=jnp.float32), "b": jnp.arange(4, dtype=jnp.uint32)}
    assert digest.state_digest(pinned) == {"a": "c07aecb5", "b": "43c3a370"}
    rng = np.random.default_rng(1)
    x = rng.standard_normal(300_001, np.float32)  # folded in several rounds, with remainders
    y = rng.standard_normal((301, 999), np.float32).astype(jnp.bfloat16)
    tree = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
    expected = {"x": _reference(x.view(np.uint32)), "y": _reference(y.view(np.uint16))}
    for folded in (True, False):
        assert digest.state_digest(tree, digest.start_state_digest(tree, folded=folded)) == expected


# ------------------------------------------------------- real checkpoints, flipped bytes
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished short run with checkpoints at steps 10, 20 and 30 (copy it to change it)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    jaxfw.train(jaxfw.compose("digits_mlp", SHORT), run_dir=run_dir)
    return run_dir


def _copy(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def _unverified(run_dir: Path, step: int) -> dict[str, np.ndarray]:
    """Checkpoint `step`'s arrays as plain Orbax reads them (no verification), onto this
    process's device whatever topology wrote them (as in the README)."""
    directory = (run_dir / "checkpoints").absolute()
    saved = ocp.StandardCheckpointer().metadata(directory / str(step) / "state").item_metadata
    here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), saved)
    restore = ocp.args.Composite(state=ocp.args.StandardRestore(target))
    state = ocp.CheckpointManager(directory).restore(step, args=restore).state
    return dict(zip(digest.leaf_names(state), map(np.asarray, jax.tree.leaves(state)), strict=True))


def _chunk_files(state: Path) -> list[Path]:
    """The files holding a checkpoint's array data: zarr chunks (state/<array>/0.0, as
    jaxfw's local writer writes them, uncompressed) or, from Orbax's own writer, its
    OCDBT store's (state/ocdbt.process_*/d/*, zstd-compressed)."""
    zarr = [
        path
        for path in state.glob("*/*")
        if path.name != ".zarray" and (path.parent / ".zarray").is_file()
    ]
    return [*zarr, *state.glob("ocdbt.process_*/d/*")]


def _flip_tensor_bytes(run_dir: Path, step: int) -> list[str]:
    """Flip one bit at a time inside the array data of checkpoint `step` until the
    checkpoint still reads with plain Orbax but holds other values, as bit rot on disk
    would leave it. Returns the arrays whose values changed."""
    clean = _unverified(run_dir, step)
    chunks = sorted(
        _chunk_files(run_dir / f"checkpoints/{step}/state"), key=lambda path: path.stat().st_size
    )
    largest = chunks[-1]  # the big kernels and their optimizer moments
    original = largest.read_bytes()
    rng = random.Random(0)
    for _ in range(40):
        corrupted = bytearray(original)
        offset = rng.randrange(len(original) // 4, 3 * len(original) // 4)
        corrupted[offset] ^= 1 << rng.randrange(8)
        largest.write_bytes(corrupted)
        try:
            now = _unverified(run_dir, step)
        except Exception:  # this flip broke the compressed stream: reported as unreadable
            continue
        changed = [name for name in clean if not np.array_equal(clean[name], now[name])]
        if changed:
            return changed
    raise AssertionError(f"no single-bit flip in {largest} changed the restored values")


def _batches():
    """A Grain iterator with the checkpoints' kind of position ({"next_index": n})."""
    split = Split(np.zeros((64, 4), np.float32), np.zeros(64, np.int32))
    return train_iterator(split, 8, 0)


def test_flipped_bytes_in_the_latest_checkpoint_resume_from_the_previous(trained, tmp_path, caplog):
    run_dir = _copy(trained, tmp_path)
    changed = _flip_tensor_bytes(run_dir, 30)
    with caplog.at_level(logging.WARNING, logger="jaxfw"):  # the same run, once more
        result = jaxfw.train(jaxfw.compose("digits_mlp", SHORT), run_dir=run_dir)
    lines = [r.getMessage() for r in caplog.records if "checkpoint step" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert "checkpoint step 30" in lines[0] and "failed verification" in lines[0]
    assert any(name in lines[0] for name in changed)  # it names a corrupted array
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["resumes"][-1]["step"] == 20
    train_steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in r]
    assert train_steps == list(range(5, 31, 5))  # 25 and 30 trained again, logged once
    assert all(np.isfinite(r["train/loss"]) for r in result.history if "train/loss" in r)
    # Step 30 was written anew by the resumed run: it verifies now, and it is the state
    # the first run had there (same batches from step 20 on: bitwise equal).
    again = Checkpointer(run_dir / "checkpoints", read_only=True)
    saved = again.restore_saved_state(30)
    pristine = _unverified(trained, 30)
    names = digest.leaf_names(saved)
    for name, leaf in zip(names, jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(np.asarray(leaf), pristine[name])


def test_a_corrupted_checkpoint_asked_for_is_refused_in_one_sentence(trained, tmp_path):
    run_dir = _copy(trained, tmp_path)
    _flip_tensor_bytes(run_dir, 30)
    checkpointer = Checkpointer(run_dir / "checkpoints", read_only=True)
    sentence = rf"^Checkpoint step 30 in {run_dir}/checkpoints failed verification: array \S+ "
    with pytest.raises(UserError, match=sentence) as refused:  # what jaxfw-generate uses
        checkpointer.restore_saved_state(30)
    assert refused.value.args[0].count(". ") == 0 and "\n" not in refused.value.args[0]
    state = checkpointer.restore_saved_state(20)  # the others are fine
    with pytest.raises(NoCheckpoint, match=sentence):
        checkpointer.restore_state(abstract_like(state), 30)
    with pytest.raises(UserError, match=r"Checkpoint step 30 .* failed verification"):
        evaluate_run(run_dir, "val", "latest")  # jaxfw-eval checkpoint=latest
    with pytest.raises(UserError, match=r"Checkpoint step 30 .* failed verification"):
        jaxfw.train(
            jaxfw.compose("digits_mlp", [*SHORT, f"trainer.resume={run_dir}/checkpoints/30"]),
            run_dir=tmp_path / "child",
        )
    # A run dir as the source: its latest good checkpoint.
    child = jaxfw.train(
        jaxfw.compose("digits_mlp", [*SHORT, f"trainer.resume={run_dir}", "trainer.steps=35"]),
        run_dir=tmp_path / "child2",
    )
    assert json.loads((child.run_dir / "run.json").read_text())["resumed_from"]["step"] == 20


def test_a_changed_data_position_fails_verification(trained, tmp_path, caplog):
    run_dir = _copy(trained, tmp_path)
    position = run_dir / "checkpoints/30/data/process_0-of-1.json"
    assert json.loads(position.read_text()) == {"next_index": 30}
    position.write_text(json.dumps({"next_index": 29}, indent=4))  # still valid, but wrong
    checkpointer = Checkpointer(run_dir / "checkpoints", read_only=True)
    target = abstract_like(checkpointer.restore_saved_state(20))
    batches = _batches()
    with caplog.at_level(logging.WARNING, logger="jaxfw"):
        step, _, meta = checkpointer.restore(target, batches)
    assert step == 20 and batches.get_state() == {"next_index": 20}
    assert CHECKSUMS not in meta  # the trainer sees the metadata it wrote, as before
    (line,) = [r.getMessage() for r in caplog.records if r.name == "jaxfw"]
    assert "checkpoint step 30" in line and "data iterator state (process 0)" in line
    with pytest.raises(NoCheckpoint, match=r"step 30 .* failed verification: its data iterator"):
        checkpointer.restore(target, _batches(), step=30)


def test_checkpoints_without_checksums_restore_unverified_as_before(trained, tmp_path, caplog):
    run_dir = _copy(trained, tmp_path)
    for meta_file in (run_dir / "checkpoints").glob("*/meta/metadata"):  # as written before
        meta = json.loads(meta_file.read_text())
        del meta[CHECKSUMS]
        meta_file.write_text(json.dumps(meta))
    changed = _flip_tensor_bytes(run_dir, 30)  # nothing to catch it with: as before
    checkpointer = Checkpointer(run_dir / "checkpoints", read_only=True)
    target = abstract_like(checkpointer.restore_saved_state(20))
    with caplog.at_level(logging.DEBUG, logger="jaxfw"):
        step, state, _ = checkpointer.restore(target, _batches())
    assert step == 30
    names = dict(zip(digest.leaf_names(state), jax.tree.leaves(state), strict=True))
    assert not np.array_equal(np.asarray(names[changed[0]]), _unverified(trained, 30)[changed[0]])
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("checkpoint step 30" in m and "no checksums" in m for m in debug)
    assert not [r for r in caplog.records if r.name == "jaxfw" and r.levelno >= logging.WARNING]


def test_arrays_restored_onto_another_dtype_are_not_called_corrupted(tmp_path, caplog):
    # Orbax casts to the target's dtype: other bits, same checkpoint, nothing corrupted.
    state = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "step": jnp.int32(7)}
    writer = Checkpointer(tmp_path / "ck", async_save=False)
    writer.save(1, state, _batches(), {})
    writer.close()
    reader = Checkpointer(tmp_path / "ck", read_only=True)
    target = abstract_like({**state, "w": state["w"].astype(jnp.bfloat16)})
    with caplog.at_level(logging.DEBUG, logger="jaxfw"):
        restored = reader.restore_state(target, 1)
    assert restored["w"].dtype == jnp.bfloat16
    assert any("another dtype" in r.getMessage() for r in caplog.records)
    # The arrays of the saved dtype are still checked.
    step_file = tmp_path / "ck/1/meta/metadata"
    meta = json.loads(step_file.read_text())
    meta[CHECKSUMS]["state"]["step"] = "00000000"
    step_file.write_text(json.dumps(meta))
    with pytest.raises(NoCheckpoint, match="failed verification: array step does not match"):
        reader.restore_state(target, 1)


# On 8 CPU devices (XLA_FLAGS must be set before JAX starts, hence a subprocess): digest
# sharded arrays, and resume the 1-device checkpoint's step 30 into an FSDP run that
# saves its own checkpoints sharded.
EIGHT_DEVICES = """
import json, sys
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
import jaxfw
from jaxfw import checkpoint_digest as digest

run_dir, overrides = sys.argv[1], json.loads(sys.argv[2])
assert jax.device_count() == 8
mesh = jax.make_mesh((4, 2), ("a", "b"))
rng = np.random.default_rng(0)
put = lambda value, *spec: jax.device_put(value, NamedSharding(mesh, P(*spec)))
tree = {
    "m": put(rng.standard_normal((64, 40), np.float32), "a", "b"),
    "v": put(np.arange(1000, dtype=np.int32), ("a", "b")),
    "r": put(np.float32(2.5)),
}
result = jaxfw.train(jaxfw.compose("digits_mlp", overrides), run_dir=run_dir)
kernel = result.state.params["Dense_0"]["kernel"]
print(json.dumps({
    "digest": digest.state_digest(tree),
    "kernel_shards": len({str(s.index) for s in kernel.addressable_shards}),
}))
"""


@pytest.mark.slow
def test_digests_do_not_depend_on_the_device_count_or_sharding(trained, tmp_path):
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    }
    overrides = [
        *SHORT,
        "mesh=fsdp",
        f"trainer.resume={trained}/checkpoints/30",
        "trainer.steps=40",
    ]
    args = [str(tmp_path / "fsdp"), json.dumps(overrides)]
    proc = subprocess.run(
        [sys.executable, "-c", EIGHT_DEVICES, *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    rng = np.random.default_rng(0)
    here = {
        "m": jnp.asarray(rng.standard_normal((64, 40), np.float32)),
        "v": jnp.arange(1000, dtype=jnp.int32),
        "r": jnp.float32(2.5),
    }
    assert report["digest"] == digest.state_digest(here)
    # The 1-device checkpoint verified on 8 devices (step 30 was asked for, so a mismatch
    # would have failed the run), and the 8-device one verifies here on 1.
    assert report["kernel_shards"] == 8  # the FSDP run's parameters really were split
    run = json.loads((tmp_path / "fsdp/run.json").read_text())
    assert run["resumed_from"]["step"] == 30 and run["status"] == "completed"
    saved = Checkpointer(tmp_path / "fsdp/checkpoints", read_only=True).restore_saved_state(40)
    assert np.isfinite(np.asarray(saved["params"]["Dense_0"]["kernel"])).all()


def _cli(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TMPDIR": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_the_same_command_recovers_and_jaxfw_eval_refuses(tmp_path):
    args = [*SHORT, "hydra.run.dir=run"]
    first = _cli("jaxfw", args, tmp_path)
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "run"
    _flip_tensor_bytes(run_dir, 30)

    again = _cli("jaxfw", args, tmp_path)  # the same command
    assert again.returncode == 0, again.stderr
    output = again.stdout + again.stderr  # Hydra's log handler writes to stdout
    lines = [line for line in output.splitlines() if "failed verification" in line]
    assert len(lines) == 1 and "checkpoint step 30" in lines[0], output
    assert json.loads((run_dir / "run.json").read_text())["resumes"][-1]["step"] == 20

    _flip_tensor_bytes(run_dir, 30)  # rewritten by the resumed run: corrupt it again
    scored = _cli("jaxfw.cli.eval", [str(run_dir), "checkpoint=latest"], tmp_path)
    assert scored.returncode == 2, scored.stdout + scored.stderr
    (message,) = scored.stderr.strip().splitlines()
    assert "Checkpoint step 30" in message and "failed verification" in message
    assert not (run_dir / "eval").exists()  # nothing was scored


def _two_processes(args: list[str], cwd: Path) -> list[str]:
    """`python -m jaxfw args` as two processes joined by jax.distributed on localhost."""
    return finish_all(launch_jaxfw(args, cwd, 2))


@pytest.mark.slow
def test_two_processes_record_both_positions_and_fall_back_together(tmp_path):
    args = [*SHORT, "hydra.run.dir=run", "model.dropout=0.0"]
    _two_processes(args, tmp_path)
    run_dir = tmp_path / "run"
    checksums = Checkpointer(run_dir / "checkpoints", read_only=True).read_meta(30)[CHECKSUMS]
    assert len(checksums["data"]) == 2  # gathered from both processes by the first
    for index, expected in enumerate(checksums["data"]):
        written = run_dir / f"checkpoints/30/data/process_{index}-of-2.json"
        assert digest.sha256(written.read_bytes()) == expected
    _flip_tensor_bytes(run_dir, 30)

    outputs = _two_processes(args, tmp_path)  # the same command: both fall back to 20
    for output in outputs:
        lines = [line for line in output.splitlines() if "failed verification" in line]
        assert len(lines) <= 1 and all("checkpoint step 30" in line for line in lines)
    assert any("failed verification" in output for output in outputs)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["resumes"][-1]["step"] == 20
    # Written by two processes, verified by one on one device.
    saved = Checkpointer(run_dir / "checkpoints", read_only=True).restore_saved_state(30)
    assert np.isfinite(np.asarray(saved["params"]["Dense_0"]["kernel"])).all()
