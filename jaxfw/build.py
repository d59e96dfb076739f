"""From a composed config to the pieces a run needs: a resolved plain config and
the model built by `_target_`."""

from typing import Any

import flax.linen as nn
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from jaxfw.config.validate import validate_config
from jaxfw.errors import UserError
from jaxfw.models import ModelFns


def resolve_config(cfg: DictConfig) -> DictConfig:
    """A validated, fully resolved copy with plain values (enums as strings), so the
    run works on, and config.yaml records, exactly the values used."""
    validate_config(cfg)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except Exception as exc:  # a bad interpolation in a user's config
        raise UserError(f"Cannot resolve the config: {str(exc).splitlines()[0]}.") from exc
    return OmegaConf.create(plain)


def build_model(model_cfg: DictConfig, num_outputs: int) -> ModelFns:
    """Instantiate the model's `_target_`; `num_outputs: ???` is filled from the data."""
    # `in model_cfg` is False for a missing (???) value; keys() lists it.
    if "num_outputs" in model_cfg.keys() and OmegaConf.is_missing(model_cfg, "num_outputs"):  # noqa: SIM118
        model_cfg.num_outputs = num_outputs
    target = model_cfg.get("_target_")
    try:
        module: Any = instantiate(model_cfg, _convert_="all")
    except InstantiationException as exc:
        # Hydra puts the cause (an ImportError, a TypeError naming the bad argument)
        # after its own first line.
        reason = " ".join(line.strip() for line in str(exc).strip().splitlines())
        raise UserError(f"Cannot build model._target_='{target}': {reason}") from exc
    if not isinstance(module, nn.Module):
        raise UserError(
            f"model._target_='{target}' built a {type(module).__name__}, not a Flax Linen module."
        )
    return ModelFns(module)
