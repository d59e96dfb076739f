"""Does jaxfw's transformer LM learn as fast per step as a hand-written Flax loop?

Held-out loss (nats per byte) after N steps on real text, for every side:

- `jaxfw`: `jaxfw.compose("lm_tiny", overrides)` + `jaxfw.train` (its Transformer, LM
  task, optimizer, schedule and batch stream), the held-out loss taken by a `jaxfw.Hook`
  at the evaluation steps;
- `flax`: a pre-LN transformer LM written from the Flax docs (`nn.Embed`,
  `nn.MultiHeadDotProductAttention` with `nn.make_causal_mask`, `nn.LayerNorm`,
  `nn.Dense`, tanh-GELU) and a plain `jax.jit` step with an Optax AdamW built here;
- `torch`: benchmarks/lm_torch_worker.py in learning mode, run by `--torch-python` (a
  venv with torch; torch is no jaxfw dependency): skipped, saying so, when it is missing.

What is the same for every side, so that only the implementations differ:

- data: the bytes of jaxfw's `data=text` source (the stdlib's .py files; `data.*`
  overrides choose the amount and split), cut into jaxfw's windows; the training batches
  are jaxfw's own stream (`IndexedBatches`: batch i = the seeded epoch permutation's
  slice), read here and handed to the other sides in the same order, and jaxfw's run
  proves it read the same ones (`trainer.log_batch_checksums`: the CRC32s must match);
- held out: jaxfw's test split (the last `data.test_fraction` of the bytes read), every
  window of it, scored by one function (mean next-byte cross-entropy) for every side;
- initialisation scheme: embeddings and learned positions N(0, 0.02), every kernel
  lecun-normal (truncated, fan-in), biases zero, LayerNorm scale 1 / bias 0 (eps 1e-6);
  the draws differ (each side has its own parameter tree), the distributions do not;
- optimizer: AdamW (b1, b2, eps, weight decay on >= 2-dim weights only), the config's
  clipping and learning-rate schedule, all read from the same composed config.

The default workload is the issue's peer workload: 4 pre-LN layers, d 256, 4 heads, MLP
1024, batch 32 x 128 bytes, AdamW 3e-4, weight decay 0.01, constant learning rate, 300
steps (~30 min a side on a busy 2-core CPU); `--small` runs lm_tiny's model (2 layers,
d 128) at batch 16 instead (~5 min a side). `--override` adds Hydra overrides for every
side (e.g. `schedule=warmup_cosine`, `optimizer.clip_grad_norm=null`); the clipping at 1.0
is lm_tiny's.

    .venv/bin/python benchmarks/lm_learning.py --small
    .venv/bin/python benchmarks/lm_learning.py                      # the peer workload
    .venv/bin/python benchmarks/lm_learning.py --override schedule=warmup_cosine

Prints one JSON object on stdout (progress on stderr): the held-out loss per side at each
evaluation step, the ratios jaxfw/flax (and torch/flax), jaxfw's own final test/loss (the
same bytes scored by jaxfw's evaluator: it must equal this script's figure for jaxfw),
the settings and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
TORCH_WORKER = HERE / "lm_torch_worker.py"
PEER = [
    "model.num_layers=4",
    "model.embed_dim=256",
    "model.num_heads=4",
    "model.mlp_dim=1024",
    "trainer.batch_size=32",
    "optimizer.lr=3e-4",
    "optimizer.weight_decay=0.01",
    "schedule=constant",
    "schedule.warmup_steps=0",
]
SMALL = ["model.num_layers=2", "model.embed_dim=128", "model.mlp_dim=512", "trainer.batch_size=16"]
# Held out: the last 1% of the stdlib's first 3.6 MB (~280 windows of email/message.py and
# email/mime/*.py: ordinary Python source). Not lm_tiny's own test split (the last 5% of
# 4 MB): that is encodings/cp*.py, generated codec tables of a kind its train split holds
# none of (benchmarks/README.md). Val is a token 7 KB (jaxfw evaluates on it once, at the end).
DATA = ["data.max_bytes=3600000", "data.test_fraction=0.01", "data.val_fraction=0.002"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _config(args: argparse.Namespace) -> Any:
    import jaxfw

    overrides = [*PEER, *(SMALL if args.small else []), *DATA, *args.override]
    overrides += [
        f"trainer.steps={args.steps}",
        f"trainer.eval_every={args.steps}",  # jaxfw's own val pass once, at the end
        f"trainer.log_every={min(args.eval_every, args.steps)}",
        "trainer.log_batch_checksums=true",
        "trainer.resume=never",
        "checkpoint.enabled=false",
        "trainer.progress=off",
    ]
    return jaxfw.compose("lm_tiny", overrides)


def _plain(cfg: Any) -> Any:
    from jaxfw.build import resolve_config

    return resolve_config(cfg)


# ------------------------------------------------------------- shared data and scoring
def _data(plain: Any) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """(the training batches in jaxfw's order, held-out inputs and targets)."""
    from jaxfw.data.batches.memory import IndexedBatches, batch_gather
    from jaxfw.data.load import load_dataset

    bundle = load_dataset(plain.data, plain.seed)
    stream = IndexedBatches(batch_gather(bundle.train, plain.trainer.batch_size, plain.seed, 0, 1))
    batches = [next(stream) for _ in range(plain.trainer.steps)]
    return batches, bundle.test.inputs, bundle.test.targets


def _scorer(apply: Any, inputs: np.ndarray, targets: np.ndarray, batch: int = 64) -> Any:
    """params -> mean next-byte cross-entropy (nats) over every held-out window, the same
    for every JAX side (`apply(params, tokens) -> logits`)."""
    import jax
    import optax

    @jax.jit
    def summed(params: Any, x: Any, y: Any) -> Any:
        logits = apply(params, x).astype("float32")
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()

    def score(params: Any) -> float:
        total = 0.0
        # The last, shorter batch compiles once more.
        for start in range(0, len(inputs), batch):
            total += float(
                summed(params, inputs[start : start + batch], targets[start : start + batch])
            )
        return total / targets.size

    return score


# ------------------------------------------------------------------- the jaxfw side
def _jaxfw_side(cfg: Any, eval_steps: list[int], score_of: Any) -> dict[str, Any]:
    import jaxfw

    class HeldOut(jaxfw.Hook):
        """The held-out loss of the state after each evaluation step."""

        def __init__(self) -> None:
            super().__init__(every=eval_steps[0])
            self.losses: dict[int, float] = {}
            self.score = None

        def after_call(self, ctx: Any) -> None:
            if ctx.step in eval_steps:
                if self.score is None:
                    model = ctx.parts.model
                    self.score = score_of(
                        lambda p, x: model.apply({"params": p}, {"inputs": x}, train=False)[0]
                    )
                self.losses[ctx.step] = self.score(ctx.state.params)
                _log(f"# jaxfw step {ctx.step}: held-out {self.losses[ctx.step]:.4f}")

    hook = HeldOut()
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        result = jaxfw.train(cfg, run_dir, hooks=[hook])
        seconds = time.perf_counter() - start
        lines = (Path(run_dir) / "batch_checksums.jsonl").read_text().splitlines()
        crcs = [json.loads(line)["batch/crc32"] for line in lines]
    test = {k: v for k, v in result.metrics.items() if k.startswith("test/")}
    return {"held_out": hook.losses, "seconds": round(seconds, 1), "crc32": crcs, "test": test}


# -------------------------------------------------------------------- the Flax side
def _flax_model(m: Any, seq_len: int) -> Any:
    import flax.linen as nn

    class Transformer(nn.Module):
        """A pre-LN decoder-only transformer LM as a Flax user writes it."""

        @nn.compact
        def __call__(self, tokens: Any) -> Any:
            embed = nn.Embed(256, m.embed_dim, embedding_init=nn.initializers.normal(0.02))
            positions = self.param(
                "positions", nn.initializers.normal(0.02), (seq_len, m.embed_dim)
            )
            x = embed(tokens) + positions[: tokens.shape[1]]
            mask = nn.make_causal_mask(tokens)
            for _ in range(m.num_layers):
                attention = nn.MultiHeadDotProductAttention(m.num_heads, use_bias=False)
                x = x + attention(nn.LayerNorm()(x), mask=mask)
                x = x + nn.Dense(m.embed_dim)(nn.gelu(nn.Dense(m.mlp_dim)(nn.LayerNorm()(x))))
            return nn.Dense(256)(nn.LayerNorm()(x))

    return Transformer()


def _flax_side(
    plain: Any, batches: list[dict], eval_steps: list[int], score_of: Any
) -> dict[str, Any]:
    import jax
    import optax
    from hand_loop import hand_optimizer  # the same AdamW as overhead.py's hand loop

    model = _flax_model(plain.model, plain.data.seq_len)
    tx = hand_optimizer(plain)
    params = model.init(jax.random.key(plain.seed), batches[0]["inputs"])["params"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params: Any, opt_state: Any, x: Any, y: Any) -> tuple[Any, Any, Any]:
        def loss_fn(p: Any) -> Any:
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    score = score_of(lambda p, x: model.apply({"params": p}, x))
    losses: dict[int, float] = {}
    start = time.perf_counter()
    for i, batch in enumerate(batches, 1):
        params, opt_state, _ = step(params, opt_state, batch["inputs"], batch["targets"])
        if i in eval_steps:
            losses[i] = score(params)
            _log(f"# flax step {i}: held-out {losses[i]:.4f}")
    return {"held_out": losses, "seconds": round(time.perf_counter() - start, 1)}


# ------------------------------------------------------------------- the torch side
def _torch_side(
    args: argparse.Namespace, plain: Any, batches: list[dict], held_out: tuple, eval_steps: list
) -> dict[str, Any]:
    """The same batches and held-out windows through lm_torch_worker.py's learning mode."""
    python = Path(args.torch_python)
    if not python.exists():
        return {"skipped": f"no Python at --torch-python {python} (torch is no jaxfw dependency)"}
    m, o = plain.model, plain.optimizer
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data.npz"
        np.savez(
            data,
            inputs=np.stack([b["inputs"] for b in batches]),
            targets=np.stack([b["targets"] for b in batches]),
            held_inputs=held_out[0],
            held_targets=held_out[1],
        )
        settings = {
            "seed": plain.seed, "vocab": 256, "layers": m.num_layers, "embed": m.embed_dim,
            "heads": m.num_heads, "mlp": m.mlp_dim, "seq_len": plain.data.seq_len,
            "lr": o.lr, "b1": o.b1, "b2": o.b2, "eps": o.eps, "weight_decay": o.weight_decay,
            "clip": o.clip_grad_norm, "schedule": plain.schedule.name,
            "warmup_steps": plain.schedule.warmup_steps, "steps": plain.trainer.steps,
            "final_lr_fraction": plain.schedule.final_lr_fraction,
            "learning": str(data), "eval_steps": eval_steps,
        }  # fmt: skip
        done = subprocess.run(
            [str(python), str(TORCH_WORKER), json.dumps(settings)],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1:]}
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return {**answer, "held_out": {int(k): v for k, v in answer["held_out"].items()}}


# ------------------------------------------------------------------------ the driver
def _settings(plain: Any, held_out_windows: int) -> dict[str, Any]:
    m, o, s, d = plain.model, plain.optimizer, plain.schedule, plain.data
    return {
        "model": {k: m[k] for k in ("num_layers", "embed_dim", "num_heads", "mlp_dim")},
        "batch": [plain.trainer.batch_size, d.seq_len],
        "steps": plain.trainer.steps,
        "optimizer": {k: o[k] for k in ("name", "lr", "b1", "b2", "eps", "weight_decay")}
        | {"clip_grad_norm": o.clip_grad_norm},
        "schedule": dict(s),
        "data": {k: d[k] for k in ("max_bytes", "val_fraction", "test_fraction")},
        "held_out_windows": held_out_windows,
        "seed": plain.seed,
    }


def _machine(load_start: float) -> dict[str, Any]:
    import jaxlib
    from machine import machine_info

    return machine_info(load_start, jaxlib=jaxlib.__version__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--small", action="store_true", help="lm_tiny's model, batch 16")
    parser.add_argument("--override", action="append", default=[], help="for every side")
    parser.add_argument("--sides", default="jaxfw,flax,torch")
    parser.add_argument("--torch-python", default="/tmp/torchvenv/bin/python")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))  # benchmarks/machine.py
    from jaxfw import xla_flags

    xla_flags.configure()  # before any JAX computation: every side runs with jaxfw's flags
    t0, load_start = time.perf_counter(), os.getloadavg()[0]
    cfg = _config(args)
    plain = _plain(cfg)
    batches, held_inputs, held_targets = _data(plain)
    eval_steps = list(range(args.eval_every, args.steps + 1, args.eval_every))
    eval_steps += [] if args.steps in eval_steps else [args.steps]

    def score_of(apply: Any) -> Any:
        return _scorer(apply, held_inputs, held_targets)

    sides = args.sides.split(",")
    results: dict[str, Any] = {}
    for side in sides:
        _log(f"# {side} ...")
        if side == "jaxfw":
            results[side] = _jaxfw_side(cfg, eval_steps, score_of)
        elif side == "flax":
            results[side] = _flax_side(plain, batches, eval_steps, score_of)
        elif side == "torch":
            held = (held_inputs, held_targets)
            results[side] = _torch_side(args, plain, batches, held, eval_steps)
        else:
            raise SystemExit(f"unknown side {side!r}")
    _report(args, plain, results, batches, eval_steps, len(held_inputs), t0, load_start)


def _report(
    args: argparse.Namespace,
    plain: Any,
    results: dict[str, Any],
    batches: list[dict],
    eval_steps: list[int],
    held_out_windows: int,
    t0: float,
    load_start: float,
) -> None:
    from jaxfw.observe.run_outputs import batch_checksum

    losses = {k: v["held_out"] for k, v in results.items() if "held_out" in v}
    report: dict[str, Any] = {
        "benchmark": "lm_learning",
        "what": "held-out loss (nats/byte) after N steps, same batches, init scheme, optimizer",
        "held_out_loss": {k: {s: round(x, 4) for s, x in v.items()} for k, v in losses.items()},
    }
    if "flax" in losses and len(losses) > 1:
        report["ratios_to_flax"] = {
            f"{k}/flax": {s: round(v[s] / losses["flax"][s], 4) for s in eval_steps}
            for k, v in losses.items()
            if k != "flax"
        }
    if "jaxfw" in results:
        jaxfw_side = results["jaxfw"]
        ours = [batch_checksum(b) for b in batches]
        report["jaxfw_read_the_same_batches"] = jaxfw_side.pop("crc32") == ours
        report["jaxfw_own_test"] = {k: round(v, 4) for k, v in jaxfw_side.pop("test").items()}
    report["sides"] = {
        k: {n: x for n, x in v.items() if n != "held_out"} for k, v in results.items()
    }
    report["settings"] = _settings(plain, held_out_windows)
    report["overrides"] = args.override
    report["machine"] = _machine(load_start)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
