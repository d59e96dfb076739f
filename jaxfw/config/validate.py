"""Checks on a composed config that the schema's types alone cannot express."""

import dataclasses
import importlib.util
import math
from collections.abc import Callable

from omegaconf import DictConfig, OmegaConf

from jaxfw.config.schema import Config
from jaxfw.errors import UserError

# Values filled in by jaxfw itself once the data is known.
FILLED_LATER = {"model.num_outputs", "model.in_features"}


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


def _finite(ok: Callable[[float], bool]) -> Callable[[float], bool]:
    return lambda v: math.isfinite(v) and ok(v)


# (key, test, what is allowed, null allowed). Every float must also be finite: `lr=inf`
# passes `> 0` and would only surface as a non-finite loss at the first step.
_RANGES: list[tuple[str, Callable[[float], bool], str, bool]] = [
    ("trainer.steps", lambda v: v >= 1, "at least 1", False),
    ("trainer.batch_size", lambda v: v >= 1, "at least 1", False),
    ("trainer.eval_batch_size", lambda v: v >= 1, "at least 1", False),
    ("trainer.eval_every", lambda v: v >= 0, "0 (evaluate only at the end) or more", False),
    ("trainer.log_every", lambda v: v >= 1, "at least 1", False),
    ("trainer.grad_accum", lambda v: v >= 1, "at least 1", False),
    ("trainer.peak_flops", _finite(lambda v: v > 0), "a finite number greater than 0", True),
    ("optimizer.lr", _finite(lambda v: v > 0), "a finite number greater than 0", False),
    ("optimizer.momentum", lambda v: 0 <= v < 1, "in [0, 1)", False),
    ("optimizer.b1", lambda v: 0 <= v < 1, "in [0, 1)", False),
    ("optimizer.b2", lambda v: 0 <= v < 1, "in [0, 1)", False),
    ("optimizer.eps", _finite(lambda v: v > 0), "a finite number greater than 0", False),
    ("optimizer.weight_decay", _finite(lambda v: v >= 0), "a finite number, 0 or more", False),
    ("optimizer.clip_grad_norm", _finite(lambda v: v > 0), "a finite number greater than 0", True),
    ("schedule.warmup_steps", lambda v: v >= 0, "0 or more", False),
    ("schedule.final_lr_fraction", lambda v: 0 <= v <= 1, "in [0, 1]", False),
    ("data.test_fraction", lambda v: 0 < v < 1, "strictly between 0 and 1", False),
    ("data.val_fraction", lambda v: 0 < v < 1, "strictly between 0 and 1", False),
    ("data.scale", _finite(lambda v: v > 0), "a finite number greater than 0", False),
    ("task.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)", False),
    ("checkpoint.every_seconds", _finite(lambda v: v > 0), "a finite number greater than 0", True),
]


def _check_ranges(cfg: DictConfig) -> None:
    for key, ok, allowed, optional in _RANGES:
        value = OmegaConf.select(cfg, key)
        if value is None and optional:
            continue
        if value is None or not ok(value):
            also = " (or null to leave it unset)" if optional else ""
            raise UserError(f"Invalid value {value!r} for '{key}': must be {allowed}{also}.")


def _check_name(name: object) -> None:
    """`name` is the directory runs are filed under (runs/<name>/): one plain path part."""
    text = name if isinstance(name, str) else ""
    forbidden = ("/", "\\", "..")
    if (
        not text.strip()
        or text == "."
        or any(s in text for s in forbidden)
        or not text.isprintable()
    ):
        raise UserError(
            f"Invalid value {name!r} for 'name': runs are filed under runs/<name>/, so it must be "
            "a single non-empty directory name (no '/', '\\', '..' or control characters)."
        )


def _check_steps_per_execution(value: object) -> None:
    text = str(value)
    if text != "auto" and not (text.isdigit() and int(text) >= 1):
        raise UserError(
            f"Invalid value {value!r} for 'trainer.steps_per_execution': must be auto or an "
            "integer of at least 1."
        )


def validate_config(cfg: DictConfig) -> None:
    """Raise UserError naming the first bad value in a composed config."""
    _check_no_extra_keys(cfg, Config, "")
    _check_missing(cfg)
    _check_name(cfg.name)
    _check_ranges(cfg)
    if cfg.trainer.batch_size % cfg.trainer.grad_accum:
        raise UserError(
            f"trainer.batch_size={cfg.trainer.batch_size} must be divisible by "
            f"trainer.grad_accum={cfg.trainer.grad_accum} (equal microbatches)."
        )
    if cfg.logger.mlflow and cfg.logger.enabled and importlib.util.find_spec("mlflow") is None:
        raise UserError("logger.mlflow=true needs MLflow: pip install 'jaxfw[mlflow]'.")
    _check_steps_per_execution(cfg.trainer.steps_per_execution)
    window = list(cfg.trainer.profile_steps)
    if window and not (len(window) == 2 and 1 <= window[0] <= window[1] <= cfg.trainer.steps):
        raise UserError(
            f"trainer.profile_steps={window} must be [first, last] with "
            f"1 <= first <= last <= trainer.steps ({cfg.trainer.steps})."
        )
    if not isinstance(cfg.model, DictConfig) or "_target_" not in cfg.model:
        raise UserError(
            "The config's 'model' needs a '_target_' naming a Flax module class "
            "(e.g. model=mlp or model._target_=my_package.MyModule)."
        )
