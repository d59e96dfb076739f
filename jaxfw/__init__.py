"""jaxfw: a functional JAX training framework.

Notebook use:
    cfg = jaxfw.compose("digits_mlp", ["trainer.steps=200"])
    result = jaxfw.train(cfg)          # result.state, result.history, result.run_dir
    jaxfw.train(cfg, hooks=[MyHook(every=200)])   # MyHook(jaxfw.Hook): your own step hooks
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Hook", "TrainResult", "compose", "train"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import jaxfw` (and the CLI's argument checks) does not load JAX.
    if name == "compose":
        from jaxfw.config.compose import compose  # lazily: Hydra loads on first use

        return compose
    if name == "Hook":
        from jaxfw.hooks import Hook  # lazily: `import jaxfw` loads no JAX

        return Hook
    if name in ("train", "TrainResult"):
        from jaxfw import trainer  # lazily: JAX loads on first use

        return getattr(trainer, name)
    raise AttributeError(f"module 'jaxfw' has no attribute {name!r}")
