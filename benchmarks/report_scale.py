"""How the end-of-run report scales with the number of classes: wall time and peak memory
of `jaxfw.report.write_report` for C classes x R rows per class.

    .venv/bin/python benchmarks/report_scale.py                      # C = 10, 100, 1000
    .venv/bin/python benchmarks/report_scale.py --classes 10 100 --rows-per-class 3 --timeout 120

Each C runs in its own subprocess (a fresh heap, so one size's garbage does not flatter
the next). The subprocess builds the evaluation document the way `jaxfw.evaluation.run` does:
synthetic logits (the target's logit raised by --signal) go through jaxfw's own metric
pipeline (`classification_stats`, `classification_metrics`, `ScoreAccumulator`) and
`jaxfw.evaluation.run._curves` (ROC and precision-recall curves of every class,
reliability bins), with a training history, data findings and run metadata. Then,
and only this is measured, it calls `write_report` into a temporary directory:

- `wall_s`: wall time of `write_report`;
- `peak_rss_increase_mb`: the process's peak RSS during `write_report` minus its RSS
  just before (the peak is reset first via /proc/self/clear_refs, Linux >= 4.0; where
  that is refused, a thread samples RSS every 2 ms instead: `rss_method` says which);
- `python_alloc_peak_mb`: the peak of Python's allocations (tracemalloc) during a second,
  untimed `write_report` call: unlike RSS, not hidden by freed memory being reused;
- `document_build_s` and `rss_before_mb`: what building the document took and held
  (the evaluation's cost, not the report's);
- the size of every file written, and the number of curve points in the document
  against those in metrics.json.

A size that runs past --timeout is reported as `{"timed_out": true}`. One JSON object on
stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _rss_kb(field: str = "VmRSS") -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _rss_kb("VmHWM") <= _rss_kb("VmRSS") + 1024


class _Sampler:
    """Peak RSS by polling, for kernels that refuse to reset VmHWM."""

    def __init__(self) -> None:
        self.peak = _rss_kb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_kb())

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_kb())


def _history(steps: int = 2000, every: int = 20) -> list[dict]:
    records = []
    for step in range(every, steps + 1, every):
        decay = 2.0 ** (-step / 400)
        records.append(
            {"step": step, "train/loss": 0.2 + decay, "train/accuracy": 1 - decay, "time": step}
        )
        records.append({"step": step, "eval/loss": 0.3 + decay, "eval/accuracy": 0.9 - decay})
    return records


def build_document(classes: int, rows_per_class: int, signal: float, seed: int) -> dict:
    """The document `jaxfw.evaluation.run.evaluation_document` would hand to the report."""
    import jax
    import numpy as np

    from jaxfw.evaluation.run import _curves
    from jaxfw.evaluation.split import SplitEvaluation
    from jaxfw.metrics import ScoreAccumulator, classification_metrics, to_host
    from jaxfw.metrics.stats import classification_stats

    rng = np.random.default_rng(seed)
    rows = classes * rows_per_class
    targets = rng.permutation(np.arange(rows) % classes)
    logits = rng.normal(size=(rows, classes)).astype(np.float32)
    logits[np.arange(rows), targets] += signal
    stats = to_host(jax.jit(classification_stats)(logits, targets))
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    scores = ScoreAccumulator()
    scores.add(probabilities, targets)
    metrics = classification_metrics(stats)
    metrics.update(scores.metrics())
    evaluation = SplitEvaluation({"loss": metrics["log_loss"], **metrics}, stats, scores)
    names = [f"class_{i}" for i in range(classes)]
    return {
        "run_dir": "runs/report_scale/run",
        "run_id": f"report_scale-{classes}x{rows_per_class}",
        "split": "test",
        "checkpoint": {"kind": "best", "step": 2000},
        "task": "classification",
        "class_names": names,
        "metrics": evaluation.metrics,
        "curves": _curves(evaluation, names),
        "config": {"name": "report_scale", "trainer": {"steps": 2000, "batch_size": 64}},
        "data_fingerprint": "0" * 64,
        "data_findings": [{"severity": "warning", "message": f"{rows} rows, {classes} classes"}],
        "run": {"run_id": "report_scale", "status": "completed", "seed": seed},
        "created": "2026-01-01T00:00:00+00:00",
    }


def _curve_points(curves: dict) -> int:
    return sum(
        len(curve.get("x") or [])
        for kind in ("roc", "pr")
        for curve in (curves.get(kind) or {}).values()
    )


def child(classes: int, rows_per_class: int, signal: float, seed: int) -> dict[str, Any]:
    import gc

    from jaxfw.report import write_report

    start = time.perf_counter()
    document = build_document(classes, rows_per_class, signal, seed)
    history = _history()
    build_s = time.perf_counter() - start
    gc.collect()
    with tempfile.TemporaryDirectory() as tmp:
        before = _rss_kb()
        reset = _reset_peak()
        start = time.perf_counter()
        if reset:
            paths = write_report(Path(tmp) / "report", document, history)
            wall = time.perf_counter() - start
            peak = _rss_kb("VmHWM")
        else:
            with _Sampler() as sampler:
                paths = write_report(Path(tmp) / "report", document, history)
                wall = time.perf_counter() - start
            peak = sampler.peak
        saved = json.loads(paths["metrics"].read_text())
        sizes = {key: path.stat().st_size for key, path in sorted(paths.items())}
        # A second call under tracemalloc: Python's own allocations, which RSS can hide
        # when the call reuses memory the document's construction freed.
        tracemalloc.start()
        write_report(Path(tmp) / "again", document, history)
        traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "classes": classes,
        "rows": classes * rows_per_class,
        "wall_s": round(wall, 3),
        "peak_rss_increase_mb": round((peak - before) / 1024, 1),
        "rss_before_mb": round(before / 1024, 1),
        "rss_method": "VmHWM reset" if reset else "sampled every 2 ms",
        "python_alloc_peak_mb": round(traced_peak / 2**20, 1),
        "document_build_s": round(build_s, 3),
        "curve_points_in_document": _curve_points(document["curves"]),
        "curve_points_in_metrics_json": _curve_points(saved.get("curves") or {}),
        "file_bytes": sizes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rows-per-class", type=int, default=3)
    parser.add_argument("--signal", type=float, default=3.0, help="added to the target logit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per class count")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (classes,) = args.classes
        print(json.dumps(child(classes, args.rows_per_class, args.signal, args.seed)))
        return

    from machine import machine_info

    load_start = os.getloadavg()[0]
    results = []
    for classes in args.classes:
        print(f"report_scale: {classes} classes x {args.rows_per_class} rows", file=sys.stderr)
        command = [
            sys.executable,
            __file__,
            "--child",
            "--classes",
            str(classes),
            "--rows-per-class",
            str(args.rows_per_class),
            "--signal",
            str(args.signal),
            "--seed",
            str(args.seed),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=args.timeout, check=True
            )
        except subprocess.TimeoutExpired:
            results.append({"classes": classes, "timed_out": True, "timeout_s": args.timeout})
            continue
        except subprocess.CalledProcessError as error:
            results.append({"classes": classes, "error": error.stderr[-2000:]})
            continue
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        done_ = results[-1]
        print(f"  {done_['wall_s']} s, +{done_['peak_rss_increase_mb']} MB", file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "report_scale",
                "rows_per_class": args.rows_per_class,
                "results": results,
                "machine": machine_info(load_start),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
