"""How long does the quick start take, and how much of it is training?

Runs the default command, `jaxfw-train` with the default recipe (digits_mlp), as a
subprocess in a temporary run dir: once to warm the compile cache, then `--runs` timed
runs (default 3). For each: the wall time of the process, run.json's `time_split_s`
(imports, config, data, init, compile, training, evaluations, saves, final_evaluation,
report, shutdown: jaxfw/observe/timing.py), `after_run_json_s` (the wall time the split
does not cover: from run.json's last write to the process's exit) and `wall_minus_training_s`,
the issue's measure (target <= 5 s). Medians over the timed runs.

    .venv/bin/python benchmarks/quick_start.py                    # ~1 min on 2 cores
    .venv/bin/python benchmarks/quick_start.py --runs 5 -- trainer.steps=500
    .venv/bin/python benchmarks/quick_start.py --compare /tmp/base   # A/B, interleaved

`--compare DIR` also runs the command from another checkout of jaxfw (its folder put
first on PYTHONPATH, e.g. an export of an older commit: `git archive HEAD | tar -x -C
DIR`), alternating with this one, so both see the same load; a checkout without the time
split still gives its wall time and run.json's train_time_s. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine_info  # benchmarks/ is on sys.path: the script's folder

COMMAND = str(Path(sys.executable).with_name("jaxfw-train"))


def run_once(extra: list[str], pythonpath: str | None) -> dict[str, Any]:
    """One `jaxfw-train` process in a fresh run dir: its wall time and run.json's timings."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    work = Path(tempfile.mkdtemp(prefix="jaxfw-quick-start-"))
    try:
        run_dir = work / "run"
        start = time.perf_counter()
        done = subprocess.run(
            [COMMAND, f"run_dir={run_dir}", *extra],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"quick_start: jaxfw-train failed ({done.returncode}): {done.stderr[-2000:]}")
        record = json.loads((run_dir / "run.json").read_text())
        outputs = sorted(p.name for p in run_dir.iterdir())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summarise(wall, record, outputs)


def summarise(wall: float, record: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    split = record.get("time_split_s")
    if split:
        training = split["training"]
    else:  # a checkout without the split: the loop's time less its first (compiling) call
        training = record["train_time_s"] - record["time_to_first_step_s"]
    result: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "training_s": round(training, 3),
        "wall_minus_training_s": round(wall - training, 3),
        "total_time_s": round(record["total_time_s"], 3),
        "train_time_s": round(record["train_time_s"], 3),
        "time_to_first_step_s": round(record["time_to_first_step_s"], 3),
        "outputs": outputs,
    }
    if split:
        result["time_split_s"] = split
        result["after_run_json_s"] = round(wall - record["time_split_total_s"], 3)
    return result


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    out: dict[str, Any] = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    if "time_split_s" in runs[0]:
        out["time_split_s"] = {
            phase: round(statistics.median(r["time_split_s"][phase] for r in runs), 3)
            for phase in runs[0]["time_split_s"]
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs (after one warm-up)")
    parser.add_argument("--compare", metavar="DIR", help="another jaxfw checkout, run A/B")
    parser.add_argument("overrides", nargs="*", help="extra overrides after --")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    variants = {"this": None, **({"compare": args.compare} if args.compare else {})}
    for name, path in variants.items():
        print(f"warm-up run ({name})", file=sys.stderr)
        run_once(args.overrides, path)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for i in range(args.runs):
        for name, path in variants.items():
            runs[name].append(run_once(args.overrides, path))
            last = runs[name][-1]
            print(
                f"run {i + 1}/{args.runs} ({name}): wall {last['wall_s']:.2f} s, "
                f"wall - training {last['wall_minus_training_s']:.2f} s",
                file=sys.stderr,
            )
    report = {
        "command": [Path(COMMAND).name, "run_dir=<temp dir>", *args.overrides],
        "runs": args.runs,
        "medians": {name: medians(values) for name, values in runs.items()},
        "all_runs": runs,
        "machine": machine_info(load_start),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
