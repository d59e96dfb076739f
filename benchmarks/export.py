"""An exported artifact against the training code it came from: cold start and throughput.

    .venv/bin/python benchmarks/export.py                   # digits_mlp and lm_tiny
    .venv/bin/python benchmarks/export.py --recipes digits_mlp --repeats 30

For each recipe: train briefly (the weights' values do not change the cost), export with
`export.platforms=[cpu]`, then measure

- cold start, in fresh interpreters (median of --cold-runs): `import jaxfw.artifact`,
  `jaxfw.artifact.load` (manifest check, deserialisation, weights to the device), and the
  first prediction (which compiles the program for that batch size);
- throughput on the same batches, interleaved round by round (so the machine's noise hits
  both sides alike): the training side's jitted `model.apply` in inference mode against
  the artifact's `predict_features` (the same model input, no host preprocessing) and
  `predict` (raw inputs, host preprocessing in float64 included), and the training code's
  jit of the very predict function the artifact holds (logits, probabilities and classes:
  the artifact's extra outputs priced apart). Every side returns host numpy arrays, as a
  caller needs them. Medians of --repeats rounds; ratio = artifact / training examples
  per second (target >= 0.95).

One JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHORT = {
    "digits_mlp": ["trainer.steps=20", "trainer.eval_every=20", "trainer.progress=off"],
    "lm_tiny": [
        "trainer.steps=10",
        "trainer.eval_every=10",
        "trainer.progress=off",
        "data.max_bytes=200000",
    ],
}
BATCH = {"digits_mlp": 256, "lm_tiny": 16}  # the recipes' own scale: eval batch, train batch

COLD = """
import sys, time, json
start = time.perf_counter()
import numpy as np
import jaxfw.artifact
imported = time.perf_counter()
artifact = jaxfw.artifact.load(sys.argv[1])
loaded = time.perf_counter()
inputs = np.load(sys.argv[2])["inputs"]
artifact.predict(inputs)
first = time.perf_counter()
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported,
                  "first_prediction_s": first - loaded, "total_s": first - start}))
"""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _train_and_export(recipe: str, root: Path) -> tuple[Path, Path]:
    import jaxfw
    from jaxfw.export import export_run

    result = jaxfw.train(jaxfw.compose(recipe, SHORT[recipe]), run_dir=root / recipe)
    return result.run_dir, export_run(result.run_dir, platforms=["cpu"])


def _training_side(run_dir: Path) -> tuple[Any, Any, Any, Any]:
    """(jitted inference apply, the jitted predict function the artifact holds, variables,
    the data bundle) as jaxfw-eval builds them."""
    import jax

    from jaxfw.build import build_parts
    from jaxfw.checkpoint import abstract_like
    from jaxfw.evaluation.run import open_run_checkpoint
    from jaxfw.export.program import predict_function

    cfg, checkpointer, _, step = open_run_checkpoint(run_dir, "best")
    parts = build_parts(cfg)
    state = checkpointer.restore_state(abstract_like(parts.init_state()), step)
    variables = {"params": state.params, **state.model_state}
    apply = jax.jit(lambda v, x: parts.model.apply(v, {"inputs": x}, train=False)[0])
    outputs = jax.jit(predict_function(parts.model, cfg.task.name))
    return apply, outputs, variables, parts.data


def _raw(data: Any, model_inputs: Any) -> Any:
    """Raw inputs whose preprocessing gives `model_inputs` (array sources; tokens as they are)."""
    import numpy as np

    transform = data.transform
    if data.task_kind == "lm":
        return model_inputs
    raw = np.asarray(model_inputs, np.float64)
    if transform.mean is not None:
        raw = raw * transform.std + transform.mean
    return (raw / transform.scale).astype(np.float32)


def _cold(artifact: Path, inputs_file: Path, runs: int) -> dict[str, float]:
    results = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", COLD, str(artifact), str(inputs_file)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(proc.stdout.splitlines()[-1]))
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def _throughput(recipe: str, run_dir: Path, artifact_dir: Path, repeats: int, batches: int):
    import numpy as np

    import jaxfw.artifact

    apply, outputs, variables, data = _training_side(run_dir)
    artifact = jaxfw.artifact.load(artifact_dir)
    size = BATCH[recipe]
    pool = np.asarray(data.test.inputs)
    rows = np.resize(np.arange(len(pool)), size * batches)
    model_batches = [pool[rows[i * size : (i + 1) * size]] for i in range(batches)]
    raw_batches = [_raw(data, b) for b in model_batches]

    def training() -> None:
        for batch in model_batches:
            np.asarray(apply(variables, batch))

    def same_outputs() -> None:
        for batch in model_batches:
            {name: np.asarray(value) for name, value in outputs(variables, batch).items()}

    def features() -> None:
        for batch in model_batches:
            artifact.predict_features(batch)

    def raw() -> None:
        for batch in raw_batches:
            artifact.predict(batch)

    sides = {
        "training_apply": training,
        "training_predict_function": same_outputs,
        "artifact_predict_features": features,
        "artifact_predict": raw,
    }
    for run in sides.values():  # compile and warm every side first
        run()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    examples = size * batches
    rate = {name: examples / statistics.median(t) for name, t in times.items()}
    return {
        "batch_size": size,
        "batches_per_round": batches,
        "rounds": repeats,
        "examples_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ratio_predict_features_vs_training": round(
            rate["artifact_predict_features"] / rate["training_apply"], 3
        ),
        "ratio_predict_vs_training": round(rate["artifact_predict"] / rate["training_apply"], 3),
        # The same outputs (probabilities, classes) computed by the training code's jit:
        # what the artifact's program itself costs, apart from its extra outputs.
        "ratio_predict_features_vs_training_predict_function": round(
            rate["artifact_predict_features"] / rate["training_predict_function"], 3
        ),
        "spread_training_s": [
            round(min(times["training_apply"]), 5),
            round(max(times["training_apply"]), 5),
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--recipes", nargs="+", default=["digits_mlp", "lm_tiny"], choices=list(SHORT)
    )
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--batches", type=int, default=20, help="batches per timed round")
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]

    import jax
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import machine_info

    out: dict[str, Any] = {"recipes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for recipe in args.recipes:
            _log(f"{recipe}: train briefly and export")
            run_dir, artifact = _train_and_export(recipe, root)
            data = _training_side(run_dir)[-1]
            inputs_file = root / f"{recipe}_inputs.npz"
            np.savez(inputs_file, inputs=_raw(data, data.test.inputs[: BATCH[recipe]]))
            _log(f"{recipe}: cold start x{args.cold_runs}")
            cold = _cold(artifact, inputs_file, args.cold_runs)
            _log(f"{recipe}: throughput, {args.repeats} interleaved rounds")
            files = {p.name: p.stat().st_size for p in artifact.iterdir()}
            out["recipes"][recipe] = {
                "cold_start_median_s": {k: round(v, 3) for k, v in cold.items()},
                "throughput": _throughput(recipe, run_dir, artifact, args.repeats, args.batches),
                "artifact_bytes": files,
            }
    out["machine"] = machine_info(load_start, jax_for_export=jax.__version__)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
