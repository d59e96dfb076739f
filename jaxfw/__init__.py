"""jaxfw: a functional JAX training framework.

Notebook use:
    cfg = jaxfw.compose("digits_mlp", ["trainer.steps=200"])
    result = jaxfw.train(cfg)          # result.state, result.history, result.run_dir
    jaxfw.train(cfg, hooks=[MyHook(every=200)])   # MyHook(jaxfw.Hook): your own step hooks
    jaxfw.train(cfg, model=MyModule(...), data=(X, y))   # objects instead of config entries
    jaxfw.evaluate(result.run_dir)     # a checkpoint's report (model=, data= if objects)
    jaxfw.export_run(result.run_dir)   # the deployable artifact (jaxfw.artifact.load)
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Hook", "TrainResult", "compose", "evaluate", "export_run", "train"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import jaxfw` (and the CLI's argument checks) does not load JAX.
    if name == "compose":
        from jaxfw.config.compose import compose  # lazily: Hydra loads on first use

        return compose
    if name == "Hook":
        from jaxfw.hooks import Hook  # lazily: `import jaxfw` loads no JAX

        return Hook
    if name == "evaluate":
        from jaxfw.evaluation.run import evaluate_run  # lazily: JAX loads on first use

        return evaluate_run
    if name == "export_run":
        from jaxfw.export.run import export_run  # lazily: JAX loads on first use

        return export_run
    if name in ("train", "TrainResult"):
        from jaxfw import trainer  # lazily: JAX loads on first use

        return getattr(trainer, name)
    raise AttributeError(f"module 'jaxfw' has no attribute {name!r}")
