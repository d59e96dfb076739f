"""What does jaxfw's trainer cost over a minimal hand-written JAX training loop?

The same model (the recipe's Flax module class and settings), data (the recipe's train
split, loaded once with `jaxfw.data.load_dataset`), batch size, optimizer (AdamW with the
recipe's weight decay mask, warmup-cosine schedule, gradient clipping where the recipe has
it) and number of steps, trained by

- `hand`: a minimal Flax + Optax loop written in this file: its own `jax.jit` train step
  (state donated, `donate_argnums`), its own numpy batching (one seeded permutation per
  epoch, one fancy index per batch, the numpy arrays passed straight to the jitted step),
  the loss fetched to the host only every `log_every` steps;
- `jaxfw`: jaxfw's real trainer through its Python API (`jaxfw.compose` + `jaxfw.train`,
  temporary run dir, `trainer.progress=off`, `trainer.eval_every=0`,
  `checkpoint.enabled=false`, `trainer.compile_cache=off`, `task.report_at_end=false`;
  the logger stays on: metrics.jsonl and TensorBoard are part of what a run costs), with
  no other knob set: `trainer.steps_per_execution=auto` picks the steps per call from the
  first calls' timings (each run's choice is reported as `jaxfw_steps_per_call`).

Steady-state throughput after compilation, per log interval: for jaxfw, the run's own
`train/samples_per_s` records (`result.history`) without the first log interval (which
follows the compiled first step); for the hand-written loop, the same intervals, timed
between its own syncs (the loss fetched every `log_every` steps), from step `log_every` to
the last step. A run's figure is the median of its intervals' rates (a burst of load from
another tenant of a shared machine slows an interval, not the run); `ratio_whole_window`
in `per_pair` divides total samples by total time instead.

Both loops run in this one process with jaxfw's default XLA:CPU flags (`jaxfw.xla_flags`,
set before JAX starts; recorded in the JSON's `machine.xla_flags`).

Runs interleave hand/jaxfw(/variants), every other round in reverse order, for

- `digits_mlp`: the default recipe (MLP 256-256 with dropout 0.1, AdamW, warmup-cosine,
  batch 128), `--digits-steps` (default 2000) with its `log_every` of 100,
  `--digits-pairs` (default 5), plus in every round jaxfw with
  `trainer.steps_per_execution=16` and `log_every=128` (every call 16 steps long), and
  `hand_scan_16`: the hand-written step inside a `lax.scan` of 16 steps per call, the
  plainest JAX way to amortise a call over 16 steps, hence the ceiling for K=16 here;
- `digits_mlp_batch16`: the same at batch 16 and twice the steps, with the same variants:
  a step small enough for the host's per-call work to show;
- `host_bound_mlp`: the same recipe shrunk until its compute is next to nothing (one
  hidden layer of 8, batch 8), `--host-steps` (default 4000), `--host-pairs` (default 3),
  with the same variants: each step takes what the host's work per step takes, so
  `overhead_us_per_step` is what jaxfw's loop adds to a step over the hand-written one;
- `lm_tiny`: the lm_tiny recipe (`jaxfw.models.Transformer` per conf/model/transformer.yaml,
  batch 16 x 128 tokens, AdamW + clipping; the hand-written loss is
  `jaxfw.tasks.LanguageModeling.loss`), `--lm-steps` (default 128) with `--lm-log-every`
  (default 16), `--lm-pairs` (default 5), with the same K=16 variants (`log_every` 16 is
  already a multiple of 16). Only to keep the run's end short (every run
  evaluates its last step on the validation split and scores the test split), the
  held-out splits are cut to 0.2% each (`data.val_fraction` / `data.test_fraction`);
  both loops train on the same train split.

Reported per model: samples/s (and tokens/s for the LM) of both (medians over runs),
`ratio` jaxfw / hand (the median of the pairs' ratios; the issue's target is >= 0.98),
`ratio_of_medians`, `ratio_range` (the lowest and highest pair), each pair's numbers, and
`overhead_us_per_step` (the extra wall time per step implied by the medians); per variant,
`ratio_to_hand` (median over rounds, with its range), and for `jaxfw_steps_per_execution_16`
`ratio_to_hand_scan_16` (median of the rounds' ratios to `hand_scan_16`, with its range).

`breakdown` (digits_mlp and host_bound_mlp; `--breakdown-steps`, 0: off) times the pieces
of a step apart, on jaxfw's own `build_parts`: the trainer's compiled step and the
hand-written one on the same device batch, on a numpy batch (what the loop passes on CPU)
and after `Parts.put` (the prefetch path) (wall and main-thread CPU time per step,
interleaved, medians of 5), and per call: `Parts.put`, a `train_batches` `next()` against a
numpy gather, and fetching a log interval's metrics as unpacked dicts (`jax.device_get` of
`log_every` steps' metric dicts: what the loop did before it packed each call's metrics
into one vector). `breakdown.steps_per_call_16` does the same for 16 steps per call: both
compiled scans alone on the same stacked batches, and the host's work to build one call's
16 batches (jaxfw's single gather, the hand loop's 16 gathers and a stack, and 16 `next()`
calls and a stack, the way jaxfw read them before).

    .venv/bin/python benchmarks/overhead.py               # ~7 min on a 2-core CPU
    .venv/bin/python benchmarks/overhead.py --lm-pairs 0 --breakdown-steps 0  # ~4 min

Prints one JSON object on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hand_loop import hand_loop
from machine import machine_info
from omegaconf import OmegaConf
from overhead_breakdown import breakdown

import jaxfw
from jaxfw import xla_flags
from jaxfw.data import load_dataset

# Both loops run in this one process with the XLA:CPU flags a jaxfw run gets by default
# (set before JAX starts its backend; the hand-written loop benefits from them alike).
XLA_FLAGS_APPLIED = xla_flags.configure()

TARGET_RATIO = 0.98
JAXFW_OVERRIDES = [
    "trainer.progress=off",
    "trainer.eval_every=0",
    "checkpoint.enabled=false",
    "trainer.compile_cache=off",
    "task.report_at_end=false",
]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ jaxfw's trainer
def jaxfw_run(recipe: str, overrides: list[str], root: Path, tag: str) -> dict[str, Any]:
    cfg = jaxfw.compose(recipe, [*overrides, *JAXFW_OVERRIDES])
    result = jaxfw.train(cfg, run_dir=root / tag)
    log_every, batch_size = result.config.trainer.log_every, result.config.trainer.batch_size
    records = [r for r in result.history if "train/samples_per_s" in r]
    # The first record with a rate follows the compiling call (at log_every, or at twice
    # log_every when that call itself ran log_every steps); it is left out: each record
    # covers (previous record's step, its step].
    assert records[0]["step"] <= 2 * log_every, records[0]
    intervals = list(itertools.pairwise(records))
    samples = sum((r["step"] - p["step"]) * batch_size for p, r in intervals)
    seconds = sum(
        (r["step"] - p["step"]) * batch_size / r["train/samples_per_s"] for p, r in intervals
    )
    chosen = json.loads((root / tag / "run.json").read_text()).get("steps_per_execution", {})
    return {
        "samples_per_s": samples / seconds,
        "steps_per_call": chosen.get("steps_per_call", result.config.trainer.steps_per_execution),
        "interval_samples_per_s": [r["train/samples_per_s"] for _, r in intervals],
        "final_loss": records[-1]["train/loss"],
        "data_wait_fraction": statistics.median(
            r["train/data_wait_fraction"] for _, r in intervals
        ),
    }


# --------------------------------------------------------------------- one model
@dataclass(frozen=True)
class Variant:
    """An extra loop run in every round: jaxfw's trainer, or the hand-written loop with
    `steps_per_call` steps scanned per call, with its own config overrides."""

    loop: str  # "jaxfw" or "hand"
    overrides: tuple[str, ...]
    steps_per_call: int = 1


def _plain(recipe: str, overrides: list[str]) -> Any:
    cfg = jaxfw.compose(recipe, [*overrides, *JAXFW_OVERRIDES])
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def bench_model(
    name: str,
    recipe: str,
    overrides: list[str],
    pairs: int,
    root: Path,
    breakdown_steps: int,
    variants: dict[str, Variant] | None = None,
) -> dict:
    """hand / jaxfw (/ each extra variant) interleaved `pairs` times; every ratio is a
    loop over the hand-written single-step loop of the same round."""
    plain = _plain(recipe, overrides)
    data = load_dataset(plain.data, plain.seed)  # the same in-memory arrays jaxfw trains on
    task = plain.task.name
    loops = {"hand": Variant("hand", ()), "jaxfw": Variant("jaxfw", ()), **(variants or {})}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in loops}
    for i in range(pairs):
        # Interleaved, and every other round in reverse order (A B C, C B A, ...): load
        # drifting on a shared machine, or a loop running better first or second, hits
        # all loops alike.
        order = list(loops.items()) if i % 2 == 0 else list(reversed(loops.items()))
        for variant, loop in order:
            extra = [*overrides, *loop.overrides]
            if loop.loop == "jaxfw":
                result = jaxfw_run(recipe, extra, root, f"{name}-{variant}-{i}")
            else:
                hand_cfg = _plain(recipe, extra)
                result = hand_loop(
                    hand_cfg, data.train, data.num_classes, task, loop.steps_per_call
                )
            runs[variant].append(result)
            _log(f"# {name} {variant} #{i}: {result}")
    # A run's rate is the median of its log intervals' rates: a burst of load from another
    # tenant of this shared machine slows one interval, not the run's figure.
    rates = {
        k: [statistics.median(r["interval_samples_per_s"]) for r in v] for k, v in runs.items()
    }
    hand, ours = statistics.median(rates["hand"]), statistics.median(rates["jaxfw"])
    paired = [b / a for a, b in zip(rates["hand"], rates["jaxfw"], strict=True)]
    batch = plain.trainer.batch_size
    out: dict[str, Any] = {
        "recipe": recipe,
        "overrides": overrides,
        "steps_per_run": plain.trainer.steps,
        "log_every": plain.trainer.log_every,
        "measured_steps_per_run": plain.trainer.steps - plain.trainer.log_every,
        "batch_size": batch,
        "samples_per_s_hand": round(hand, 1),
        "samples_per_s_jaxfw": round(ours, 1),
        "ratio": round(statistics.median(paired), 4),  # jaxfw / hand, median over pairs
        "ratio_range": [round(min(paired), 4), round(max(paired), 4)],
        "ratio_of_medians": round(ours / hand, 4),
        "jaxfw_steps_per_call": [r["steps_per_call"] for r in runs["jaxfw"]],
        "overhead_us_per_step": round((batch / ours - batch / hand) * 1e6, 1),
        "per_pair": [
            {
                "hand_samples_per_s": round(statistics.median(a["interval_samples_per_s"]), 1),
                "jaxfw_samples_per_s": round(statistics.median(b["interval_samples_per_s"]), 1),
                "ratio": round(r, 4),
                "ratio_whole_window": round(b["samples_per_s"] / a["samples_per_s"], 4),
                "jaxfw_data_wait_fraction": round(b["data_wait_fraction"], 4),
                "final_loss_hand": round(a["final_loss"], 4),
                "final_loss_jaxfw": round(b["final_loss"], 4),
            }
            for a, b, r in zip(runs["hand"], runs["jaxfw"], paired, strict=True)
        ],
    }
    for variant, loop in (variants or {}).items():
        ratios = [b / a for a, b in zip(rates["hand"], rates[variant], strict=True)]
        out[variant] = {
            "loop": loop.loop,
            "overrides": list(loop.overrides),
            "steps_per_call": loop.steps_per_call,
            "samples_per_s": round(statistics.median(rates[variant]), 1),
            "ratio_to_hand": round(statistics.median(ratios), 4),  # median over rounds
            "ratio_to_hand_range": [round(min(ratios), 4), round(max(ratios), 4)],
            "per_round_ratio_to_hand": [round(r, 4) for r in ratios],
        }
        if variant == "jaxfw_steps_per_execution_16" and "hand_scan_16" in rates:
            # The target for K steps per call: >= 0.9 of the hand-written scan.
            to_scan = [b / a for a, b in zip(rates["hand_scan_16"], rates[variant], strict=True)]
            out[variant]["ratio_to_hand_scan_16"] = round(statistics.median(to_scan), 4)
            out[variant]["ratio_to_hand_scan_16_range"] = [
                round(min(to_scan), 4),
                round(max(to_scan), 4),
            ]
    if task == "lm":
        seq_len = plain.data.seq_len
        out["seq_len"] = seq_len
        out["tokens_per_s_hand"] = round(hand * seq_len, 1)
        out["tokens_per_s_jaxfw"] = round(ours * seq_len, 1)
    if breakdown_steps:
        out["breakdown"] = breakdown(plain, breakdown_steps, repeats=5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits-pairs", type=int, default=5, help="hand/jaxfw repetitions")
    parser.add_argument("--digits-steps", type=int, default=2000)
    parser.add_argument("--host-pairs", type=int, default=3)
    parser.add_argument("--host-steps", type=int, default=4000)
    parser.add_argument("--lm-pairs", type=int, default=5)
    parser.add_argument("--lm-steps", type=int, default=128)
    parser.add_argument("--lm-log-every", type=int, default=16)
    parser.add_argument(
        "--breakdown-steps", type=int, default=300, help="digits steps per breakdown timing; 0: off"
    )
    args = parser.parse_args()
    logging.getLogger("jaxfw").setLevel(logging.ERROR)  # data findings (constant columns)
    # K=16 steps per call, logging every 128 steps: every call is 16 long (a shorter one
    # would be compiled inside the measured window). The hand-written loop scanning 16 steps
    # per call is the ceiling of what K steps per call can give on this machine.
    every_128 = "trainer.log_every=128"
    spe = {
        "jaxfw_steps_per_execution_16": Variant(
            "jaxfw", ("trainer.steps_per_execution=16", every_128)
        ),
        "hand_scan_16": Variant("hand", (every_128,), steps_per_call=16),
    }
    models = [
        ("digits_mlp", "digits_mlp", [f"trainer.steps={args.digits_steps}"],
         args.digits_pairs, args.breakdown_steps, spe),
        # The same model at batch 16: a step small enough for the host's per-call cost
        # to matter, where running K steps per call pays off most.
        ("digits_mlp_batch16", "digits_mlp", [
            f"trainer.steps={args.digits_steps * 2}", "trainer.batch_size=16",
        ], args.digits_pairs, 0, spe),
        # A model whose compute is next to nothing (one hidden layer of 8, batch 8): each
        # step's time is the host's work per step, so the difference between the loops is
        # what jaxfw's loop adds per step (`overhead_us_per_step`).
        ("host_bound_mlp", "digits_mlp", [
            f"trainer.steps={args.host_steps}", "trainer.batch_size=8", "model.hidden=[8]",
        ], args.host_pairs, args.breakdown_steps, spe),
        ("lm_tiny", "lm_tiny", [
            f"trainer.steps={args.lm_steps}",
            f"trainer.log_every={args.lm_log_every}",
            "data.val_fraction=0.002",
            "data.test_fraction=0.002",
        ], args.lm_pairs, 0, {
            "jaxfw_steps_per_execution_16": Variant("jaxfw", ("trainer.steps_per_execution=16",)),
            "hand_scan_16": Variant("hand", (), steps_per_call=16),
        }),
    ]  # fmt: skip
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        results = {
            name: bench_model(name, recipe, overrides, pairs, Path(tmp), steps, variants)
            for name, recipe, overrides, pairs, steps, variants in models
            if pairs > 0  # --lm-pairs 0 / --digits-pairs 0: leave that model out
        }
    print(
        json.dumps(
            {
                "benchmark": "overhead",
                "pairs": {
                    "digits_mlp": args.digits_pairs,
                    "host_bound_mlp": args.host_pairs,
                    "lm_tiny": args.lm_pairs,
                },
                "target_ratio": TARGET_RATIO,
                "models": results,
                "machine": machine_info(load_start),
                "wall_s": round(time.perf_counter() - t0, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
