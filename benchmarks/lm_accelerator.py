"""Tokens/s and MFU of a recipe's own training run, as jaxfw logs them: a short, prepared
check for an accelerator (the ~50M-parameter `lm_50m` by default).

Trains the recipe through jaxfw's Python API (`jaxfw.compose` + `jaxfw.train`, temporary
run dir, `trainer.progress=log`, no evaluation before the end, the compile cache off so
compilation is timed) and reports the medians of the logged `train/tokens_per_s`,
`train/samples_per_s`, `train/step_time_s`, `train/mfu` and `train/data_wait_fraction`
over the log intervals after the first (which holds compilation), the device memory
figures where the backend reports them, time to first step, FLOPs per step (XLA's cost
analysis) and the peak they are divided by.

    python benchmarks/lm_accelerator.py                           # lm_50m, 300 steps
    python benchmarks/lm_accelerator.py --steps 200 trainer.steps_per_execution=10

Extra arguments are config overrides. Prints one JSON object on stdout.
"""

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import jax

import jaxfw

KEYS = (
    "train/tokens_per_s",
    "train/samples_per_s",
    "train/step_time_s",
    "train/mfu",
    "train/data_wait_fraction",
    "train/device_memory_mb",
    "train/device_peak_memory_mb",
    "train/host_memory_mb",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="lm_50m")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = parser.parse_args()
    logging.getLogger("jaxfw").setLevel(logging.ERROR)
    overrides = [
        f"trainer.steps={args.steps}",
        f"trainer.log_every={args.log_every}",
        "trainer.eval_every=0",
        "trainer.progress=log",
        "trainer.compile_cache=off",
        "checkpoint.enabled=false",
        "task.report_at_end=false",
        *args.overrides,
    ]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lm-accelerator-") as tmp:
        result = jaxfw.train(jaxfw.compose(args.recipe, overrides), run_dir=Path(tmp) / "run")
        run = json.loads((result.run_dir / "run.json").read_text())
    records = [r for r in result.history if "train/step_time_s" in r][1:]  # after compiling
    device = jax.devices()[0]
    print(
        json.dumps(
            {
                "benchmark": "lm_accelerator",
                "recipe": args.recipe,
                "overrides": overrides,
                "parameters": run.get("parameters"),
                "medians_after_first_interval": {
                    key: statistics.median(r[key] for r in records)
                    for key in KEYS
                    if records and key in records[0]
                },
                "intervals": len(records),
                "time_to_first_step_s": run.get("time_to_first_step_s"),
                "flops_per_step": run.get("flops_per_step"),
                "peak_flops": run.get("peak_flops"),
                "final_metrics": result.metrics,
                "device": f"{device.platform}:{device.device_kind}",
                "device_count": jax.device_count(),
                "jax": jax.__version__,
                "nproc": os.cpu_count(),
                "wall_s": round(time.perf_counter() - start, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
