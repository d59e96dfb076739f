"""What JaxfwClassifier and JaxfwRegressor share (jaxfw/sklearn/__init__.py says how they
use jaxfw): the parameters as Hydra overrides, the fit through `jaxfw.train`, inference
through the run's FeatureTransform and predict program, export through `jaxfw.export_run`."""

from __future__ import annotations

import copy
import numbers
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import nnx
from omegaconf import DictConfig
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from jaxfw.config.compose import compose
from jaxfw.export.program import PLATFORMS, predict_function
from jaxfw.export.run import export_run
from jaxfw.hooks import Hook
from jaxfw.models import ModelFns
from jaxfw.objects import model_fingerprint
from jaxfw.trainer import train

# What every fit sets. data.validation=off: val and test are the training rows on purpose,
# which jaxfw's data checks would (rightly, for a real split) report as leakage;
# scikit-learn's validate_data has already checked the arrays' values.
_FIXED = ("data.standardize=true", "data.validation=off")
# The regression task's own metrics: a classification recipe's task.metrics (accuracy,
# roc_auc, ...) would otherwise survive `task=regression`, since the recipe sets them later.
_REGRESSION = (
    "task=regression",
    "task.metrics=[loss,mae,r2]",
    "task.best_metric=eval/loss",
    "task.best_mode=min",
)
_MAX_SEED = np.iinfo(np.int32).max


def _seed(random_state: Any) -> int:
    """jaxfw's int seed for a scikit-learn random_state (see jaxfw/sklearn/__init__.py)."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if not 0 <= random_state <= _MAX_SEED:
            raise ValueError(
                f"random_state={random_state} is out of range; use an int in [0, {_MAX_SEED}], "
                "None or a numpy RandomState."
            )
        return int(random_state)
    return int(check_random_state(random_state).randint(_MAX_SEED))


def _batch_size(wanted: int, n_samples: int) -> int:
    """`wanted`, or for fewer rows (jaxfw needs batch_size <= the training rows) the
    largest power of two <= n_samples: tiny inputs of many sizes (cross-validation folds,
    scikit-learn's checks) then share a few compiled train steps instead of compiling one
    per row count (~1 s each on a CPU)."""
    if wanted <= n_samples:
        return wanted
    return 1 << (n_samples.bit_length() - 1)


# Composing with Hydra costs about as much as a warm fit of a small model (~0.3 s); the
# same (recipe, overrides) always composes to the same config, so searches and the
# scikit-learn checks, which fit the same settings many times, compose each once.
_COMPOSED: dict[tuple[str, tuple[str, ...]], DictConfig] = {}
_COMPOSED_MAX = 64


def _compose(recipe: str, overrides: tuple[str, ...]) -> DictConfig:
    key = (recipe, overrides)
    if key not in _COMPOSED:
        if len(_COMPOSED) >= _COMPOSED_MAX:
            _COMPOSED.pop(next(iter(_COMPOSED)))
        _COMPOSED[key] = compose(recipe, list(overrides))
    return copy.deepcopy(_COMPOSED[key])  # jaxfw.train resolves a copy; this keeps ours clean


# One jitted predict program per Linen model configuration (its fingerprint: class and
# hyper-parameters), shared by every estimator fitted with it: the weights are an argument,
# so a refit (a grid search, cross-validation) reuses the compiled program. An NNX model's
# fingerprint includes its values, so its program is kept per adapter object (held in the
# entry, so that its id is not reused while the entry lives).
_PROGRAMS: dict[tuple[Any, str], tuple[Any, Callable]] = {}
_PROGRAMS_MAX = 32


def _program(model: Any, task: str) -> Callable:
    if isinstance(model, ModelFns):
        key: tuple[Any, str] = (model_fingerprint(model.module), task)
    else:
        key = (id(model), task)
    if key not in _PROGRAMS:
        if len(_PROGRAMS) >= _PROGRAMS_MAX:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = (model, jax.jit(predict_function(model, task)))
    return _PROGRAMS[key][1]


class _Capture(Hook):
    """Keeps the run's Parts: the data bundle's fitted FeatureTransform, the model adapter
    and the task (regression's target scale) are what prediction must replay."""

    parts: Any = None

    def start(self, ctx: Any) -> None:
        self.parts = ctx.parts


class JaxfwEstimator(BaseEstimator):
    """What the classifier and the regressor share: parameters, fit, batched inference,
    export. Subclasses set `_task` and encode their targets."""

    _task = "classification"

    def __init__(
        self,
        recipe: str = "breast_cancer",
        model: Any = None,
        steps: int = 300,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        random_state: Any = 0,
        overrides: Sequence[str] = (),
        run_dir: str | Path | None = None,
        verbose: bool = False,
    ) -> None:
        self.recipe = recipe
        self.model = model
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.overrides = overrides
        self.run_dir = run_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def _model_object(self) -> Any:
        return self.model if isinstance(self.model, nn.Module | nnx.Module) else None

    def _overrides(self, n_samples: int) -> tuple[str, ...]:
        """The Hydra overrides of this fit; the user's `overrides` last, so they win."""
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive int.")
        if not isinstance(self.learning_rate, numbers.Real) or not self.learning_rate > 0:
            raise ValueError(f"learning_rate={self.learning_rate!r} must be a positive number.")
        if isinstance(self.overrides, str):
            raise ValueError("overrides must be a list of 'key=value' strings, not one string.")
        keep = self.run_dir is not None
        out = [
            f"trainer.steps={int(self.steps)}",
            f"trainer.batch_size={_batch_size(int(self.batch_size), n_samples)}",
            f"optimizer.lr={float(self.learning_rate)!r}",
            f"seed={_seed(self.random_state)}",
            f"trainer.progress={'auto' if self.verbose else 'off'}",
            f"logger.enabled={str(keep).lower()}",
            f"checkpoint.enabled={str(keep).lower()}",
            # A refit into the same run_dir must not continue the previous fit.
            "trainer.resume=never",
            *_FIXED,
        ]
        if isinstance(self.model, str):
            out.append(f"model={self.model}")
        elif self.model is not None and self._model_object() is None:
            raise ValueError(
                f"model={self.model!r} is neither a model config name (e.g. 'mlp_small') nor a "
                "Flax module instance."
            )
        if self._task == "regression":
            out += _REGRESSION
        return tuple([*out, *map(str, self.overrides)])

    def _adapt(self, cfg: DictConfig) -> DictConfig:
        """The composed config fitted to this y (nothing to change by default)."""
        return cfg

    def _fit_arrays(self, X: np.ndarray, targets: np.ndarray) -> None:
        cfg = self._adapt(_compose(self.recipe, self._overrides(len(X))))
        # All of X is train, val and test: jaxfw holds nothing out (jaxfw/sklearn/__init__.py).
        data = {"train": (X, targets), "val": (X, targets), "test": (X, targets)}
        capture = _Capture()
        result = train(
            copy.deepcopy(cfg),
            run_dir=self.run_dir,
            model=self._model_object(),
            data=data,
            hooks=[capture],
        )
        parts = capture.parts
        self.history_ = result.history
        self.config_ = result.config
        if self.run_dir is not None:
            self.run_dir_ = Path(result.run_dir)
        # As jaxfw's export takes them: the parameters plus any model state, unboxed.
        state = result.state
        self._weights = nn.meta.unbox({"params": state.params, **state.model_state})
        self._model_fns = parts.model
        self._transform = parts.data.transform
        self._target_scale = (
            float(getattr(parts.task, "target_mean", 0.0)),
            float(getattr(parts.task, "target_std", 1.0)),
        )
        self._chunk = int(result.config.trainer.eval_batch_size)
        # export() needs the config and the data again (jaxfw.export_run checks the data's
        # fingerprint and takes the preprocessing and drift baseline from it).
        self._composed = cfg
        self._data = data

    # ------------------------------------------------------------ inference
    def _outputs(self, X: Any) -> dict[str, np.ndarray]:
        """The predict program's outputs for raw X, in padded batches of one shape."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype="numeric")
        features = self._transform.apply(X)  # float32, as the training rows were
        program = _program(self._model_fns, self._task)
        size = self._chunk
        parts = []
        for start in range(0, len(features), size):
            chunk = features[start : start + size]
            count = len(chunk)
            if count < size:  # pad: one compiled shape for every request
                pad = np.zeros((size - count, *chunk.shape[1:]), chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            out = program(self._weights, chunk)
            parts.append({name: np.asarray(value)[:count] for name, value in out.items()})
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    # --------------------------------------------------------------- export
    def export(self, path: str | Path, platforms: Sequence[str] = PLATFORMS) -> Path:
        """The fitted model as a jaxfw artifact directory at `path` (which must not exist),
        loadable with `jaxfw.artifact.load(path)`; returns its path.

        With `run_dir` set, the run's final checkpoint is exported. Without one, fit wrote
        nothing, so the same fit is repeated (same config, data and seed: the same
        parameters, which is checked) into a temporary run directory with checkpoints,
        exported from there and deleted (fit keeps a reference to the training arrays for
        this: export_run proves the data by its fingerprint and takes the artifact's
        preprocessing and drift baseline from it). A classifier's artifact carries `classes_`
        as its class labels: its `predicted_label` output is what `predict` returns.
        """
        check_is_fitted(self)
        model = self._model_object()
        run_dir = getattr(self, "run_dir_", None)
        labels = getattr(self, "classes_", None)  # the classifier's labels, of any type

        def export_from(run: Path) -> Path:
            # "latest": the final step's checkpoint, the parameters predict() uses
            # ("best" is chosen on eval/* numbers, here training-set numbers).
            return export_run(
                run,
                "latest",
                out=path,
                platforms=platforms,
                model=model,
                data=self._data,
                class_labels=labels,
            )

        if run_dir is not None:
            return export_from(run_dir)
        cfg = copy.deepcopy(self._composed)
        cfg.logger.enabled = True
        cfg.checkpoint.enabled = True
        cfg.trainer.progress = "off"
        with tempfile.TemporaryDirectory(prefix="jaxfw-sklearn-") as tmp:
            run = Path(tmp) / "run"
            result = train(cfg, run_dir=run, model=model, data=self._data)
            again = nn.meta.unbox({"params": result.state.params, **result.state.model_state})
            same = jax.tree.map(
                lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), again, self._weights
            )
            if not all(jax.tree.leaves(same)):
                raise RuntimeError(
                    "Repeating the fit for export gave different parameters (non-deterministic "
                    "kernels on this machine?); fit with run_dir=... set and export from it."
                )
            return export_from(run)

    # ------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if "_weights" in state:  # host arrays: a pickle loads without the devices it had
            state["_weights"] = jax.tree.map(np.asarray, jax.device_get(state["_weights"]))
        return state
