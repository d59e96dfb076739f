"""Sample text from a trained byte-level LM run: `jaxfw-generate <run_dir> --prompt "def "`.

Decoding is jit-compiled and uses the transformer's key/value cache: the prompt is
encoded once (prefill), then each new byte costs one single-position step. When the
context (model.max_length) is full, the last half is re-encoded and decoding goes on.
`stream` yields each byte as it is sampled; `generate` collects them.

The run directory's config is checked before the model is built: its `_target_`s must
name Flax module classes installed here (jaxfw.models.targets), nothing else is called.
"""

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxfw.build import build_model, load_run_config
from jaxfw.checkpoint import CHECKPOINT_DIR, Checkpointer
from jaxfw.errors import UserError
from jaxfw.models import ModelFns
from jaxfw.sampling import MAX_NEW_TOKENS, check_sampling

__all__ = ["MAX_NEW_TOKENS", "LanguageModel", "generate", "load_language_model", "stream"]


@dataclass
class LanguageModel:
    module: Any  # a jaxfw.models.Transformer
    params: Any
    step: int  # the checkpoint's step

    @property
    def context(self) -> int:
        return int(self.module.max_length)


def load_language_model(run_dir: str | Path, checkpoint: str = "best") -> LanguageModel:
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)  # checks the model's _target_s before anything is built
    if cfg.task.name != "lm":
        raise UserError(f"Run '{run_dir}' trained task={cfg.task.name}; generation needs task=lm.")
    checkpointer = Checkpointer(
        run_dir / CHECKPOINT_DIR,
        metric=cfg.task.best_metric,
        mode=cfg.task.best_mode,
        read_only=True,
    )
    steps = checkpointer.steps()
    if not steps:
        raise UserError(f"No checkpoint in {checkpointer.directory} to generate from.")
    step = checkpointer.best_step() if checkpoint == "best" else None
    if checkpoint == "latest" or step is None:
        step = steps[-1]
    if checkpoint not in ("best", "latest"):
        if not checkpoint.isdigit() or int(checkpoint) not in steps:
            raise UserError(
                f"checkpoint={checkpoint} is not best, latest or a saved step "
                f"({', '.join(map(str, steps))})."
            )
        step = int(checkpoint)
    state = checkpointer.restore_saved_state(step)
    model = build_model(cfg.model, 256, source=str(run_dir / "config.yaml"))
    if not isinstance(model, ModelFns):
        raise UserError(
            f"Run '{run_dir}' trained a Flax NNX model ({cfg.model._target_}); jaxfw-generate "
            "samples with the key/value cache of the Linen jaxfw.models.Transformer only, for "
            "now. Export the run (jaxfw-export) to score text with it."
        )
    module = model.module
    return LanguageModel(module, state["params"], step)


def _sample(logits: jax.Array, rng: jax.Array, temperature: float) -> jax.Array:
    if temperature <= 0:
        return jnp.argmax(logits, -1)
    return jax.random.categorical(rng, logits / temperature, axis=-1)


def _compiled(model: LanguageModel, temperature: float) -> tuple[Callable, Callable]:
    module = model.module

    @jax.jit
    def prefill(params: Any, tokens: jax.Array, rng: jax.Array) -> tuple[jax.Array, Any]:
        cache = jax.tree.map(
            jnp.zeros_like,
            module.init(jax.random.key(0), jnp.zeros((1, model.context), jnp.int32), index=0)[
                "cache"
            ],
        )
        logits, updated = module.apply(
            {"params": params, "cache": cache}, tokens, index=0, mutable=["cache"]
        )
        return _sample(logits[:, -1], rng, temperature), updated["cache"]

    @jax.jit
    def step(params: Any, cache: Any, token: jax.Array, index: jax.Array, rng: jax.Array):
        logits, updated = module.apply(
            {"params": params, "cache": cache}, token[:, None], index=index, mutable=["cache"]
        )
        return _sample(logits[:, -1], rng, temperature), updated["cache"]

    return prefill, step


def stream(
    model: LanguageModel,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    seed: int = 0,
) -> Iterator[int]:
    """The `max_new_tokens` bytes sampled after `prompt` (UTF-8 encoded), each yielded as
    soon as it is sampled. The arguments are checked here, before the first byte."""
    data = prompt.encode("utf-8")
    if not data:
        raise UserError("The prompt is empty; give at least one character (--prompt 'def ').")
    if len(data) >= model.context:
        raise UserError(
            f"The prompt is {len(data)} bytes but the model's context is {model.context} "
            "bytes (model.max_length); shorten it."
        )
    check_sampling(max_new_tokens, temperature)
    return _decode(model, data, max_new_tokens, float(temperature), seed)


def _decode(
    model: LanguageModel, prompt: bytes, max_new_tokens: int, temperature: float, seed: int
) -> Iterator[int]:
    prefill, step = _compiled(model, temperature)
    rng = jax.random.key(seed)
    # Only the last context's bytes are ever re-encoded: memory stays bounded.
    tokens = deque(prompt, maxlen=model.context)
    rng, key = jax.random.split(rng)
    token, cache = prefill(model.params, jnp.asarray([list(tokens)], jnp.int32), key)
    index = len(tokens)
    for count in range(1, max_new_tokens + 1):
        byte = int(token[0])
        tokens.append(byte)
        yield byte
        if count == max_new_tokens:
            return
        rng, key = jax.random.split(rng)
        if index == model.context:  # full: keep the last half as the new context
            window = list(tokens)[-(model.context // 2) :]
            token, cache = prefill(model.params, jnp.asarray([window], jnp.int32), key)
            index = len(window)
            continue
        token, cache = step(model.params, cache, token, jnp.int32(index), key)
        index += 1


def generate(
    model: LanguageModel,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    seed: int = 0,
) -> bytes:
    """`max_new_tokens` bytes sampled after `prompt` (UTF-8 encoded), all at once."""
    return bytes(stream(model, prompt, max_new_tokens, temperature, seed))


def greedy_reference(model: LanguageModel, prompt: bytes, count: int) -> bytes:
    """Greedy continuation by full forward passes (no cache): what `generate` with
    temperature 0 must reproduce."""
    # One compiled pass over a window padded to the full context: attention is causal, so
    # the padding after the last real byte does not change that byte's logits.
    forward = jax.jit(lambda params, window: model.module.apply({"params": params}, window))
    tokens = list(prompt)
    for _ in range(count):
        window = tokens[-model.context :]
        padded = np.zeros((1, model.context), np.int32)
        padded[0, : len(window)] = window
        logits = forward(model.params, padded)
        tokens.append(int(jnp.argmax(logits[0, len(window) - 1])))
    return bytes(tokens[len(prompt) :])
