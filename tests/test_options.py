"""Every option the configs offer trains: each file of each group in conf/ and each recipe
in recipes/, composed and run for a couple of steps (an evaluation, a checkpoint, the test
report), so an option cannot ship broken. The cases are read from the folders: a new
option file is covered by adding it (and, when it needs other options to make sense, a
line in `_context`)."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import jaxfw
from jaxfw.config.paths import conf_dir, recipes_dir

pytestmark = pytest.mark.slow

# Steps cut short and data kept small; the models and their settings stay as shipped.
SHORT = [
    "trainer.steps=2",
    "trainer.eval_every=2",
    "trainer.log_every=1",
    "trainer.batch_size=8",
    "trainer.eval_batch_size=16",
    "trainer.progress=off",
]
# Byte-level LM data: ~2,000 test bytes, enough for a 1,024-byte window (lm_50m).
SMALL_TEXT = ["data.max_bytes=60000"]
LM = ["recipe=lm_tiny", *SMALL_TEXT]
# The ~50M-parameter model keeps its size and precision; batch and context are cut (it
# is sized for an accelerator: a full 32 x 1,024-byte step takes minutes on 2 CPU cores).
SMALL_LM_BATCH = ["trainer.batch_size=2", "trainer.eval_batch_size=2", "data.seq_len=64"]
# Groups whose options need a subprocess or no training: the mesh group runs with 8 CPU
# devices below; hydra/launcher=slurm needs the submitit plugin (tests/test_distributed_env.py).
SEPARATE_GROUPS = {"mesh", "hydra"}


def _options() -> list[tuple[str, str]]:
    return sorted(
        (path.parent.name, path.stem)
        for path in conf_dir().glob("*/*.yaml")
        if path.parent.name not in SEPARATE_GROUPS
    )


def _context(group: str, option: str, files: dict[str, Path]) -> list[str]:
    """The other options that `group=option` needs to make sense."""
    if (group, option) in {("data", "text"), ("task", "lm")} or (
        group == "model" and "transformer" in option
    ):
        return LM
    if (group, option) == ("data", "npz"):
        return [f"data.path={files['npz']}"]
    if (group, option) == ("data", "table"):
        return [f"data.path={files['csv']}", "data.target=label", "model=mlp_small"]
    if (group, option) == ("task", "regression"):
        return ["data=table", f"data.path={files['csv']}", "data.target=price", "model=mlp_small"]
    return []


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("option_data")
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 150)
    inputs = rng.normal(size=(150, 6)).astype(np.float32) + targets[:, None]
    np.savez(folder / "small.npz", inputs=inputs, targets=targets)
    rows = ["size,colour,price,label"] + [  # distinct rows: no train/test leakage
        f"{i + x:.3f},{'red' if t else 'blue'},{2 * i + 10 * t + x:.2f},{'yes' if t else 'no'}"
        for i, (x, t) in enumerate(zip(rng.normal(size=120), rng.integers(0, 2, 120), strict=True))
    ]
    (folder / "small.csv").write_text("\n".join(rows) + "\n")
    return {"npz": folder / "small.npz", "csv": folder / "small.csv"}


def _assert_trained(result, steps: int = 2) -> None:
    assert result.status == "completed"
    losses = [r["train/loss"] for r in result.history if "train/loss" in r]
    assert len(losses) == steps and all(math.isfinite(x) for x in losses), result.history
    tests = {k: v for k, v in result.metrics.items() if k.startswith("test/")}
    assert tests and all(math.isfinite(v) for v in tests.values()), result.metrics


@pytest.mark.parametrize(("group", "option"), _options(), ids=lambda x: x)
def test_each_config_group_option_trains(group, option, files, tmp_path):
    context = _context(group, option, files)
    overrides = [*context, f"{group}={option}", *SHORT, *(SMALL_LM_BATCH if context == LM else [])]
    cfg = jaxfw.compose(None, overrides)
    result = jaxfw.train(cfg, run_dir=tmp_path / "run")
    _assert_trained(result)
    if group == "debug":
        assert not (tmp_path / "run").exists()  # debug=fast writes nothing
    elif "name" in cfg[group]:
        assert result.config[group].name == option


@pytest.mark.parametrize("recipe", sorted(p.stem for p in recipes_dir().glob("*.yaml")))
def test_each_recipe_trains_when_cut_short(recipe, tmp_path):
    lm = recipe.startswith("lm_")
    overrides = [*SHORT, *([*SMALL_TEXT, *SMALL_LM_BATCH] if lm else [])]
    result = jaxfw.train(jaxfw.compose(recipe, overrides), run_dir=tmp_path / "run")
    _assert_trained(result)
    assert result.config.name == recipe


MESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jaxfw
    from omegaconf import OmegaConf
    out = {}
    for option in sys.argv[1:]:
        cfg = jaxfw.compose(None, [f"mesh={option}", *%r, "logger.enabled=false"])
        result = jaxfw.train(cfg)
        out[option] = {
            "status": result.status,
            "mesh": OmegaConf.to_container(result.config.mesh),
            "losses": [r["train/loss"] for r in result.history if "train/loss" in r],
            "test_accuracy": result.metrics["test/accuracy"],
        }
    print(json.dumps(out))
    """
)


def test_each_mesh_option_trains_on_8_cpu_devices(tmp_path):
    options = sorted(p.stem for p in (conf_dir() / "mesh").glob("*.yaml"))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    env |= {"JAX_PLATFORMS": "cpu", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", MESH_SCRIPT % (SHORT,), *options],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(runs) == options
    for option, run in runs.items():
        assert run["status"] == "completed", option
        assert len(run["losses"]) == 2 and all(math.isfinite(x) for x in run["losses"]), run
        assert 0.0 <= run["test_accuracy"] <= 1.0
    # The options are what they say: all devices on one axis, tensor parallelism in two.
    assert runs["dp"]["mesh"]["data"] == -1 and runs["fsdp"]["mesh"]["fsdp"] == -1
    assert runs["fsdp_tp"]["mesh"]["tensor"] == 2
