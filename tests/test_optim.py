"""jaxfw.optim: every schedule's values and type, the constant schedule's warmup, and the
composed `schedule=constant` of the lm_tiny recipe."""

import jax
import jax.numpy as jnp
import pytest
from omegaconf import OmegaConf

import jaxfw
from jaxfw.build import resolve_config
from jaxfw.optim import make_schedule


def _schedule_cfg(name, warmup_steps=0, final_lr_fraction=0.0):
    return OmegaConf.create(
        dict(name=name, warmup_steps=warmup_steps, final_lr_fraction=final_lr_fraction)
    )


@pytest.mark.parametrize("name", ["constant", "warmup_cosine", "warmup_linear"])
def test_every_schedule_gives_a_float32_array(name):
    # optax's constant schedule alone returns a Python float, which crashed the train
    # step's packed metrics once (`schedule=constant`).
    schedule = make_schedule(_schedule_cfg(name, 2), 0.5, 10)
    for step in (0, jnp.int32(5)):
        value = schedule(step)
        assert isinstance(value, jax.Array) and value.dtype == jnp.float32
    assert jax.jit(schedule)(jnp.int32(9)).dtype == jnp.float32


def test_constant_without_warmup_is_the_lr_from_the_first_step():
    schedule = make_schedule(_schedule_cfg("constant"), 3e-4, 300)
    assert [float(schedule(s)) for s in (0, 1, 299)] == pytest.approx([3e-4] * 3)


def test_constant_warms_up_when_warmup_steps_is_set():
    schedule = make_schedule(_schedule_cfg("constant", 10), 1.0, 100)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(99)) == pytest.approx(1.0)  # no decay


def test_lm_tiny_with_schedule_constant_composes_and_keeps_the_recipe_warmup():
    cfg = resolve_config(jaxfw.compose("lm_tiny", ["schedule=constant"]))
    assert cfg.schedule.name == "constant" and cfg.schedule.warmup_steps == 100
    schedule = make_schedule(cfg.schedule, cfg.optimizer.lr, cfg.trainer.steps)
    assert float(schedule(50)) == pytest.approx(cfg.optimizer.lr / 2)
    assert float(schedule(cfg.trainer.steps - 1)) == pytest.approx(cfg.optimizer.lr)
