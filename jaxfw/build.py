"""From a composed config to the pieces a run needs: a resolved plain config, the
model built by `_target_`, the data, the task, the optimizer and the compiled steps."""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
import yaml
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from jax.sharding import Mesh, NamedSharding
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from jaxfw import sharding
from jaxfw.config.validate import validate_config
from jaxfw.data import DataBundle, load_dataset, train_batches
from jaxfw.errors import UserError
from jaxfw.metrics import CLASSIFICATION_METRICS, LM_METRICS, REGRESSION_METRICS
from jaxfw.models import Model, ModelFns, NnxModelFns
from jaxfw.models.targets import check_model_targets
from jaxfw.objects import Objects, require_objects
from jaxfw.optim import make_optimizer, make_schedule
from jaxfw.state import TrainState, create_train_state, state_shardings
from jaxfw.steps import Steps, compile_steps
from jaxfw.tasks import build_task, num_outputs


def resolve_config(cfg: DictConfig) -> DictConfig:
    """A validated, fully resolved copy with plain values (enums as strings), so the
    run works on, and config.yaml records, exactly the values used."""
    validate_config(cfg)
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    except Exception as exc:  # a bad interpolation in a user's config
        raise UserError(f"Cannot resolve the config: {str(exc).splitlines()[0]}.") from exc
    return OmegaConf.create(plain)


def build_model(
    model_cfg: DictConfig,
    num_outputs: int,
    source: str = "The config",
    in_features: int | None = None,
) -> Model:
    """Instantiate the model's `_target_` once every `_target_` in its config is allowed
    (jaxfw.models.targets: nothing is called before that); `num_outputs: ???` and
    `in_features: ???` (NNX layers are built before they see an input) are filled from
    the data. `source` names where the config came from in messages. A Flax NNX module is
    built with `rngs=` by its adapter (jaxfw/models/nnx_adapter.py)."""
    for key, value in (("num_outputs", num_outputs), ("in_features", in_features)):
        # `in model_cfg` is False for a missing (???) value; keys() lists it.
        if key in model_cfg.keys() and OmegaConf.is_missing(model_cfg, key) and value:  # noqa: SIM118
            model_cfg[key] = value
    target = model_cfg.get("_target_")
    linen = issubclass(check_model_targets(model_cfg, source), nn.Module)

    def make(**extra: Any) -> Any:
        try:
            return instantiate(model_cfg, _convert_="all", **extra)
        except InstantiationException as exc:
            # Hydra puts the cause (an ImportError, a TypeError naming the bad argument)
            # after its own first line.
            reason = " ".join(line.strip() for line in str(exc).strip().splitlines())
            raise UserError(f"Cannot build model._target_='{target}': {reason}") from exc

    if not linen:
        return NnxModelFns.from_factory(lambda rngs: make(rngs=rngs))
    module = make()
    if not isinstance(module, nn.Module):
        raise UserError(
            f"model._target_='{target}' built a {type(module).__name__}, not a Flax Linen module."
        )
    return ModelFns(module)


RUN_CONFIG = "config.yaml"


def load_run_config(
    run_dir: str | Path, model: Any = None, data: Any = None, call: str = "jaxfw.evaluate"
) -> DictConfig:
    """A run directory's config.yaml, with its model's `_target_`s checked before anything
    is built: a run directory may come from elsewhere (jaxfw-eval, jaxfw-generate). A run
    that trained on Python objects needs them again (`model`, `data`; `call` names the
    function to pass them to in the message)."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_CONFIG
    if not path.exists():
        raise UserError(f"'{run_dir}' is not a jaxfw run directory (no config.yaml in it).")
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path} is not valid YAML ({problem}{where}).") from exc
    except (OSError, UnicodeDecodeError, OmegaConfBaseException) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UserError(f"Cannot read {path}: {reason}.") from exc
    sections = ("model", "task")
    if not isinstance(cfg, DictConfig) or not all(
        isinstance(cfg.get(key), DictConfig) for key in sections
    ):
        raise UserError(
            f"{path} is not a jaxfw run config; it must be a mapping with 'model' and 'task' "
            "sections, as jaxfw writes it."
        )
    require_objects(cfg, run_dir, model, data, call)
    if model is None:
        check_model_targets(cfg.model, str(path), run_dir)
    return cfg


# Scalar metrics each task can log during training (jaxfw-eval reports every metric).
_SCALAR_METRICS = {
    "classification": [
        m for m in CLASSIFICATION_METRICS if not m.endswith(("_per_class", "matrix"))
    ],
    "regression": list(REGRESSION_METRICS),
    "lm": list(LM_METRICS),
}


def _target_scale(cfg: DictConfig, data: DataBundle) -> tuple[float, float]:
    """Regression targets' train mean and std (the model predicts standardised targets)."""
    if cfg.task.name != "regression":
        return 0.0, 1.0
    preprocessor = getattr(data, "preprocessor", None)
    mean = getattr(preprocessor, "target_mean", None)
    std = getattr(preprocessor, "target_std", None)
    if mean is None or std is None:
        mean, std = float(np.mean(data.train.targets)), float(np.std(data.train.targets))
    return float(mean), float(std) if std and std > 0 else 1.0


def check_task_fits_data(cfg: DictConfig, data: DataBundle) -> None:
    kind = getattr(data, "task_kind", "classification")
    if kind != cfg.task.name:
        raise UserError(
            f"task={cfg.task.name} does not fit data.source={cfg.data.source}, whose targets "
            f"are for {kind}; use task={kind}."
        )
    valid = ["loss", *_SCALAR_METRICS[kind]]
    if kind == "classification":  # binary tasks report roc_auc, multiclass ones roc_auc_ovr_*
        binary = data.num_classes == 2
        valid = [
            m for m in valid if not (m.startswith("roc_auc_ovr") if binary else m == "roc_auc")
        ]
    for name in cfg.task.metrics:
        if name not in valid:
            raise UserError(
                f"Unknown metric '{name}' in task.metrics for this {kind} task; valid choices: "
                f"{', '.join(valid)}."
            )
    best = cfg.task.best_metric
    if best.split("/", 1)[-1] not in cfg.task.metrics or not best.startswith("eval/"):
        raise UserError(
            f"task.best_metric={best} must be 'eval/<name>' for a name in task.metrics "
            f"({', '.join(cfg.task.metrics)})."
        )


@dataclass
class Parts:
    """Everything a run computes with, built from the resolved config."""

    data: DataBundle
    model: Model
    task: Any
    steps: Steps
    schedule: optax.Schedule
    mesh: Mesh
    batch_sharding: NamedSharding
    state_sharding: TrainState  # a TrainState of NamedShardings
    init_state: Callable[[], TrainState]
    single_process: bool = field(default_factory=lambda: jax.process_count() == 1)

    def put(self, local_batch: dict, *, stacked: bool = False) -> dict:
        """A global, sharded batch on the devices from this process's part of it
        (`stacked`: K batches on a leading axis, for `steps.train_many`)."""
        sharding_ = self.batch_sharding
        if stacked:
            sharding_ = sharding.stacked_batch_sharding(sharding_)
        if self.single_process:
            return sharding.put_batch(local_batch, sharding_)
        return {
            key: jax.make_array_from_process_local_data(sharding_, value)
            for key, value in local_batch.items()
        }

    def step_input(self, local_batch: dict, *, stacked: bool = False) -> dict:
        """This process's part of a batch in the cheapest form the compiled step takes: in
        one process the host arrays themselves (the jitted step's input shardings place
        them, cheaper than a separate device_put), else global arrays."""
        if self.single_process:
            return local_batch
        return self.put(local_batch, stacked=stacked)

    def put_global(self, batch: dict) -> dict:
        """A global, sharded batch from the whole batch (each process keeps its part)."""
        count, index = jax.process_count(), jax.process_index()
        if count == 1:
            return self.put(batch)
        local = {k: np.split(v, count)[index] for k, v in batch.items()}
        return self.put(local)

    def train_batches(self, cfg: DictConfig) -> Any:
        """A fresh, checkpointable stream of this process's share of the training
        split's batches (its slice of every global batch), from Grain."""
        return train_batches(
            self.data.train,
            cfg.trainer.batch_size,
            cfg.seed,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )


def check_model_outputs(model: Model, example: dict, task: str, expected: int) -> None:
    """A model passed as an object is applied (shapes only) to the data's inputs first:
    a wrong input width or number of outputs is one sentence, not a trace."""
    inputs = example["inputs"]
    try:
        variables = jax.eval_shape(lambda: nn.unbox(model.init(jax.random.key(0), example)))
        outputs, _ = jax.eval_shape(lambda v: model.apply(v, example, train=False), variables)
    except Exception as exc:  # whatever the user's module raises on these inputs
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            f"The model passed cannot be applied to the data's inputs of shape "
            f"[batch, {', '.join(map(str, inputs.shape[1:]))}]: {reason}"
        ) from exc
    width = int(np.prod(outputs.shape[1:])) if task == "regression" else outputs.shape[-1]
    if width != expected:
        what = "1 output (regression)" if task == "regression" else f"{expected} outputs"
        raise UserError(
            f"The model passed returns outputs of shape {tuple(outputs.shape)} but the data "
            f"needs {what} per example; build it with that many outputs."
        )


def build_parts(cfg: DictConfig, objects: Objects | None = None) -> Parts:
    """The run's pieces from its resolved config; `objects` (a model or data passed from
    Python, see jaxfw/objects.py) replace the ones the config would build."""
    objects = objects or Objects()
    data = objects.data or load_dataset(cfg.data, cfg.seed)
    check_task_fits_data(cfg, data)
    outputs = num_outputs(cfg.task.name, data.num_classes)
    if objects.model is not None:
        model = objects.model
        check_model_outputs(model, data.example_batch(2), cfg.task.name, outputs)
    else:
        width = int(np.prod(data.input_shape)) if data.input_shape else None
        model = build_model(cfg.model, outputs, in_features=width)
    task = build_task(cfg.task, data.num_classes, *_target_scale(cfg, data))
    schedule = make_schedule(cfg.schedule, cfg.optimizer.lr, cfg.trainer.steps)
    tx = make_optimizer(cfg.optimizer, schedule)
    mesh = sharding.make_mesh(cfg.mesh)
    sharding.check_batch_size("trainer.batch_size", cfg.trainer.batch_size, mesh)
    sharding.check_batch_size("trainer.eval_batch_size", cfg.trainer.eval_batch_size, mesh)
    batch_sharding = sharding.batch_sharding(mesh)
    replicated = sharding.replicated(mesh)
    # Shapes for initialisation; the training stream itself stays untouched.
    example = data.example_batch(cfg.trainer.batch_size)
    rules = dict(cfg.mesh.rules)
    state_sharding = state_shardings(model, tx, example, mesh, rules)

    def init_state() -> TrainState:
        # No arguments: every process computes the same initial values from the seed and
        # keeps only its own shards.
        def init() -> TrainState:
            return create_train_state(model, tx, jax.random.key(cfg.seed), example)

        return jax.jit(init, out_shardings=state_sharding)()

    return Parts(
        data=data,
        model=model,
        task=task,
        steps=compile_steps(
            model,
            task,
            tx,
            schedule,
            state_sharding,
            batch_sharding,
            replicated,
            grad_accum=cfg.trainer.grad_accum,
            precision=cfg.trainer.precision,
            skip_nonfinite=cfg.trainer.nan_policy == "skip",
        ),
        schedule=schedule,
        mesh=mesh,
        batch_sharding=batch_sharding,
        state_sharding=state_sharding,
        init_state=init_state,
    )
