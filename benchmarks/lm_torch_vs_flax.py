"""lm_tiny training tokens/s: plain PyTorch eager vs a straightforward Flax loop vs jaxfw.

The same model, shapes and optimizer, trained on random byte tokens (speed only) by

- `torch`: a plain PyTorch eager loop (benchmarks/lm_torch_worker.py, run by the Python
  of `--torch-python`, a venv with torch that is never jaxfw's: torch is no jaxfw
  dependency; if that Python is missing the JSON says so and the other sides still run);
- `flax`: a Flax + Optax loop as a user would write it: `nn.MultiHeadDotProductAttention`
  with `nn.make_causal_mask`, `nn.LayerNorm`, `nn.gelu`, `nn.Dense` on [B, T, D], mean
  `optax.softmax_cross_entropy_with_integer_labels`, the recipe's AdamW + warmup-cosine +
  clipping (`hand_optimizer` of benchmarks/hand_loop.py), one `jax.jit` step with the
  state donated;
- `jaxfw`: jaxfw's own step and model: `jaxfw.build.build_parts` on the lm_tiny recipe
  (`jaxfw.models.Transformer`, the LM task's loss and accuracy, the recipe's optimizer),
  `parts.steps.train` on device batches.

Model (conf/model/transformer.yaml + recipes/lm_tiny.yaml): 2 pre-LN layers, embed 128, 4
heads, MLP 512, learned positions, causal attention, tanh-GELU, vocab 256, batch 16 x 128
tokens, AdamW (weight decay 0.01 on >= 2-dim weights) after clipping to norm 1.0, float32.

A side whose name ends in `+xla_flags` runs with `jaxfw.xla_flags.configure()` applied
before JAX starts (the XLA:CPU flags jaxfw recommends), `-xla_flags` without them (the
environment's XLA_FLAGS as they are); a bare `flax` has no flags, a bare `jaxfw` has them.
Every side is its own process, started one after the other (compilation not competing),
warmed up (`--warmup` steps), then driven round-robin: each round runs `--steps` steps on
each side in turn (A/B/C/A/B/C...: load drifting on a shared machine hits all alike) and
times them from dispatch to the host sync of the last loss. Reported: each side's
tokens/s (median over rounds, and the best round: on a shared machine the closest to an
idle one) and every round's value; `ratios` a/b as the median of the
rounds' ratios (each round's sides ran within seconds of each other); torch's thread
counts; the machine. `--jaxfw-override` passes Hydra overrides to every jaxfw side (e.g.
`trainer.precision=bf16`); `--extra-side 'NAME:OVERRIDE;OVERRIDE'` adds a jaxfw side with
overrides of its own, e.g. `old:model._target_=mymodule.Transformer` to time another model
against jaxfw's in the same rounds (a NAME ending in `-xla_flags` runs without the flags).

    .venv/bin/python benchmarks/lm_torch_vs_flax.py                 # ~1.5 min on 2 cores
    .venv/bin/python benchmarks/lm_torch_vs_flax.py --rounds 11     # steadier

Prints one JSON object on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TORCH_WORKER = HERE / "lm_torch_worker.py"
DEFAULT_SIDES = "torch,flax,flax+xla_flags,jaxfw-xla_flags,jaxfw"
RECIPE_OVERRIDES = ["data.val_fraction=0.002", "data.test_fraction=0.002"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the JAX workers
def _settings(plain: Any) -> dict[str, Any]:
    m = plain.model
    return {
        "seed": plain.seed,
        "vocab": 256,
        "layers": m.num_layers,
        "embed": m.embed_dim,
        "heads": m.num_heads,
        "mlp": m.mlp_dim,
        "seq_len": plain.data.seq_len,
        "batch": plain.trainer.batch_size,
        "lr": plain.optimizer.lr,
        "weight_decay": plain.optimizer.weight_decay,
        "clip": plain.optimizer.clip_grad_norm,
    }


def _recipe(overrides: list[str]) -> Any:
    from omegaconf import OmegaConf

    import jaxfw

    cfg = jaxfw.compose("lm_tiny", [*RECIPE_OVERRIDES, *overrides])
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def _straightforward_model(s: dict[str, Any]) -> Any:
    import flax.linen as nn

    class Transformer(nn.Module):
        """The lm_tiny transformer as a Flax user writes it from the Flax docs."""

        @nn.compact
        def __call__(self, tokens: Any) -> Any:
            length = tokens.shape[1]
            x = nn.Embed(s["vocab"], s["embed"], embedding_init=nn.initializers.normal(0.02))(
                tokens
            )
            positions = self.param(
                "positions", nn.initializers.normal(0.02), (s["seq_len"], s["embed"])
            )
            x = x + positions[:length]
            mask = nn.make_causal_mask(tokens)
            for _ in range(s["layers"]):
                attention = nn.MultiHeadDotProductAttention(s["heads"], use_bias=False)
                x = x + attention(nn.LayerNorm()(x), mask=mask)
                y = nn.gelu(nn.Dense(s["mlp"])(nn.LayerNorm()(x)))
                x = x + nn.Dense(s["embed"])(y)
            return nn.Dense(s["vocab"])(nn.LayerNorm()(x))

    return Transformer()


def _flax_step(plain: Any, batches: list[dict]) -> tuple[Any, Any]:
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from hand_loop import _classification_loss, hand_optimizer

    model = _straightforward_model(_settings(plain))
    tx = hand_optimizer(plain)
    params = nn.unbox(model.init(jax.random.key(plain.seed), batches[0]["inputs"]))["params"]
    state = (params, tx.init(params))

    def train_step(state: Any, x: Any, y: Any) -> tuple[Any, Any]:
        params, opt_state = state

        def loss_fn(p: Any) -> Any:
            return _classification_loss(model.apply({"params": p}, x), y)  # mean CE

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    jitted = jax.jit(train_step, donate_argnums=0)
    device = [(jnp.asarray(b["inputs"]), jnp.asarray(b["targets"])) for b in batches]

    def step(state: Any, i: int) -> tuple[Any, Any]:
        return jitted(state, *device[i % len(device)])

    return step, state


def _jaxfw_step(plain: Any, batches: list[dict]) -> tuple[Any, Any]:
    from jaxfw.build import build_parts

    parts = build_parts(plain)
    device = [parts.put(b) for b in batches]

    def step(state: Any, i: int) -> tuple[Any, Any]:
        state, metrics = parts.steps.train(state, device[i % len(device)])
        return state, metrics["loss"]

    return step, parts.init_state()


def worker(kind: str, xla_flags: bool, overrides: list[str], warmup: int) -> None:
    """One JAX side: answers "ready" after `warmup` steps, then times N steps per line."""
    if xla_flags:
        from jaxfw import xla_flags as flags

        assert flags.configure(), "JAX started before jaxfw.xla_flags.configure()"
    import jax
    import numpy as np

    plain = _recipe(overrides if kind == "jaxfw" else [])
    s = _settings(plain)
    rng = np.random.default_rng(s["seed"])
    shape = (s["batch"], s["seq_len"])
    batches = [
        {"inputs": rng.integers(0, s["vocab"], shape, dtype=np.int32),
         "targets": rng.integers(0, s["vocab"], shape, dtype=np.int32)}
        for _ in range(8)
    ]  # fmt: skip
    make = {"flax": _flax_step, "jaxfw": _jaxfw_step}[kind]
    compile_start = time.perf_counter()
    step, state = make(plain, batches)
    count = 0
    for _ in range(warmup):
        state, loss = step(state, count)
        count += 1
    jax.block_until_ready(loss)
    params = state[0] if kind == "flax" else state.params
    ready = {
        "ready": True,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "params": int(sum(x.size for x in jax.tree.leaves(params))),
        "compile_and_warmup_s": round(time.perf_counter() - compile_start, 2),
    }
    print(json.dumps(ready), flush=True)
    for line in sys.stdin:
        start = time.perf_counter()
        for _ in range(int(line)):
            state, loss = step(state, count)
            count += 1
        value = float(loss)  # the host sync
        print(json.dumps({"seconds": time.perf_counter() - start, "loss": value}), flush=True)


# ------------------------------------------------------------------------ the driver
def _start(
    name: str, args: argparse.Namespace, settings: dict, extra: dict[str, list[str]]
) -> tuple[Any, dict]:
    """(process, its ready line) for side `name`; (None, reason) if it cannot run."""
    env = dict(os.environ)
    if name in extra:
        flags = not name.endswith("-xla_flags")
        command = [sys.executable, __file__, "--worker", "jaxfw", "--warmup", str(args.warmup)]
        command += ["--worker-xla-flags", "on" if flags else "off"]
        command += [f"--jaxfw-override={o}" for o in [*args.jaxfw_override, *extra[name]]]
    elif name == "torch":
        python = Path(args.torch_python)
        if not python.exists():
            return None, {"skipped": f"no Python at --torch-python {python}"}
        torch_settings = {**settings, "warmup": args.warmup, "threads": args.torch_threads}
        command = [str(python), str(TORCH_WORKER), json.dumps(torch_settings)]
    else:
        kind = name.split("+")[0].split("-")[0]
        if kind not in ("flax", "jaxfw"):
            raise SystemExit(f"unknown side {name!r}")
        flags = name.endswith("+xla_flags") or (kind == "jaxfw" and "-" not in name)
        command = [sys.executable, __file__, "--worker", kind, "--warmup", str(args.warmup)]
        command += ["--worker-xla-flags", "on" if flags else "off"]
        command += [f"--jaxfw-override={o}" for o in args.jaxfw_override]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    line = process.stdout.readline()
    if not line:
        process.wait()
        return None, {"failed": f"exit status {process.returncode} before ready"}
    return process, json.loads(line)


def _machine(load_start: float) -> dict[str, Any]:
    import jaxlib
    from machine import machine_info

    return machine_info(load_start, jaxlib=jaxlib.__version__, cpu_model=_cpu_model())


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10, help="steps per side per round")
    parser.add_argument("--warmup", type=int, default=5, help="steps before timing")
    parser.add_argument("--sides", default=DEFAULT_SIDES)
    parser.add_argument("--torch-python", default="/tmp/torchvenv/bin/python")
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--jaxfw-override", action="append", default=[])
    parser.add_argument("--extra-side", action="append", default=[], help="NAME:OVR;OVR")
    parser.add_argument("--worker", choices=["flax", "jaxfw"], help=argparse.SUPPRESS)
    parser.add_argument("--worker-xla-flags", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))  # benchmarks/overhead.py's helpers
    if args.worker:
        worker(args.worker, args.worker_xla_flags == "on", args.jaxfw_override, args.warmup)
        return

    t0, load_start = time.perf_counter(), os.getloadavg()[0]
    settings = _settings(_recipe([]))
    tokens_per_step = settings["batch"] * settings["seq_len"]
    extra = {
        name: [o for o in overrides.split(";") if o]
        for name, overrides in (side.split(":", 1) for side in args.extra_side)
    }
    sides, info, processes = [*args.sides.split(","), *extra], {}, {}
    for name in sides:  # one after the other: compilation does not compete
        process, info[name] = _start(name, args, settings, extra)
        _log(f"# {name}: {info[name]}")
        if process is not None:
            processes[name] = process
    rates: dict[str, list[float]] = {name: [] for name in processes}
    losses: dict[str, float] = {}
    for i in range(args.rounds):
        for name, process in processes.items():
            process.stdin.write(f"{args.steps}\n")
            process.stdin.flush()
            answer = json.loads(process.stdout.readline())
            rates[name].append(tokens_per_step * args.steps / answer["seconds"])
            losses[name] = answer["loss"]
        _log(f"# round {i}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rates.items()))
    for process in processes.values():
        process.stdin.close()
        process.wait()

    def paired(a: str, b: str) -> float:
        return round(statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True)), 3)

    names = list(rates)
    ratios = {f"{a}/{b}": paired(a, b) for a in names for b in names if a != b}
    print(
        json.dumps(
            {
                "benchmark": "lm_torch_vs_flax",
                "what": "lm_tiny training tokens/s, steady state, interleaved rounds",
                "settings": settings,
                "tokens_per_step": tokens_per_step,
                "rounds": args.rounds,
                "steps_per_round": args.steps,
                "tokens_per_s": {k: round(statistics.median(v)) for k, v in rates.items()},
                # The fastest round: on a shared machine, the closest to an idle one.
                "tokens_per_s_best_round": {k: round(max(v)) for k, v in rates.items()},
                "ratios": ratios,
                "per_round_tokens_per_s": {k: [round(x) for x in v] for k, v in rates.items()},
                "last_loss": {k: round(v, 4) for k, v in losses.items()},
                "sides": info,
                "jaxfw_overrides": args.jaxfw_override,
                "extra_sides": extra,
                "machine": _machine(load_start),
                "wall_s": round(time.perf_counter() - t0, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
