"""Checks on a composed config that the schema's types alone cannot express."""

import dataclasses
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from jaxfw.config.schema import Config
from jaxfw.errors import UserError

# Values filled in by jaxfw itself once the data is known.
FILLED_LATER = {"model.num_outputs"}


def _check_no_extra_keys(node: DictConfig, schema: type, prefix: str) -> None:
    # `+trainer.x=1` bypasses the schema and would otherwise be dropped silently.
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        full = f"{prefix}{key}"
        if key not in fields:
            where = f"under '{prefix.rstrip('.')}'" if prefix else "at the top level"
            raise UserError(
                f"Unknown config key '{full}'; valid keys {where}: {', '.join(fields)}."
            )
        sub_schema = fields[key].type
        if dataclasses.is_dataclass(sub_schema) and isinstance(node[key], DictConfig):
            _check_no_extra_keys(node[key], sub_schema, f"{full}.")


def _check_missing(node: DictConfig, prefix: str = "") -> None:
    for key in node:
        full = f"{prefix}{key}"
        if OmegaConf.is_missing(node, key):
            if full not in FILLED_LATER:
                raise UserError(
                    f"The config needs a value for '{full}': set it with {full}=<value>."
                )
        elif isinstance(node[key], DictConfig):
            _check_missing(node[key], f"{full}.")


_RANGES: list[tuple[str, Callable[[float], bool], str]] = [
    ("trainer.steps", lambda v: v >= 1, "at least 1"),
    ("trainer.batch_size", lambda v: v >= 1, "at least 1"),
    ("trainer.eval_batch_size", lambda v: v >= 1, "at least 1"),
    ("trainer.eval_every", lambda v: v >= 0, "0 (evaluate only at the end) or more"),
    ("trainer.log_every", lambda v: v >= 1, "at least 1"),
    ("trainer.grad_accum", lambda v: v >= 1, "at least 1"),
    ("trainer.steps_per_execution", lambda v: v >= 1, "at least 1"),
    ("optimizer.lr", lambda v: v > 0, "greater than 0"),
    ("optimizer.weight_decay", lambda v: v >= 0, "0 or more"),
    ("optimizer.momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("schedule.warmup_steps", lambda v: v >= 0, "0 or more"),
    ("schedule.final_lr_fraction", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("data.test_fraction", lambda v: 0 < v < 1, "strictly between 0 and 1"),
    ("data.val_fraction", lambda v: 0 < v < 1, "strictly between 0 and 1"),
    ("task.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
]


def validate_config(cfg: DictConfig) -> None:
    """Raise UserError naming the first bad value in a composed config."""
    _check_no_extra_keys(cfg, Config, "")
    _check_missing(cfg)
    for key, ok, allowed in _RANGES:
        value = OmegaConf.select(cfg, key)
        if not ok(value):
            raise UserError(f"Invalid value {value!r} for '{key}': must be {allowed}.")
    if cfg.trainer.batch_size % cfg.trainer.grad_accum:
        raise UserError(
            f"trainer.batch_size={cfg.trainer.batch_size} must be divisible by "
            f"trainer.grad_accum={cfg.trainer.grad_accum} (equal microbatches)."
        )
    window = list(cfg.trainer.profile_steps)
    if window and not (len(window) == 2 and 1 <= window[0] <= window[1] <= cfg.trainer.steps):
        raise UserError(
            f"trainer.profile_steps={window} must be [first, last] with "
            f"1 <= first <= last <= trainer.steps ({cfg.trainer.steps})."
        )
    clip = cfg.optimizer.clip_grad_norm
    if clip is not None and clip <= 0:
        raise UserError(
            f"Invalid value {clip!r} for 'optimizer.clip_grad_norm': must be > 0 or null."
        )
    if not isinstance(cfg.model, DictConfig) or "_target_" not in cfg.model:
        raise UserError(
            "The config's 'model' needs a '_target_' naming a Flax module class "
            "(e.g. model=mlp or model._target_=my_package.MyModule)."
        )
