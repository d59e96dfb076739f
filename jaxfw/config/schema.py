"""The typed config schema, registered with Hydra's ConfigStore.

Every key a recipe or override may set is declared here, so a misspelled key or a
value of the wrong type is rejected when the config is composed, before any work
starts. Fixed choices are enums: OmegaConf then names the valid values itself.
"""

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

SCHEMA_NAME = "jaxfw_schema"


class ProgressMode(Enum):
    auto = "auto"  # a live bar on a TTY, plain log lines otherwise
    bar = "bar"
    log = "log"
    off = "off"


class Precision(Enum):
    fp32 = "fp32"
    bf16 = "bf16"  # bfloat16 compute; float32 parameters, gradients and optimizer state


class Prefetch(Enum):
    # on for accelerators and batches of 1 MiB or more; else a separate device_put costs
    # more host time than the jitted step's own transfer of host arrays saves
    auto = "auto"
    on = "on"
    off = "off"


class OptimizerName(Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"


class WeightDecayMask(Enum):
    kernels = "kernels"  # decay weight matrices and conv kernels, not biases or norm scales
    all = "all"


class ScheduleName(Enum):
    constant = "constant"
    warmup_cosine = "warmup_cosine"
    warmup_linear = "warmup_linear"


# raise: stop with a clear message naming the step; checkpoints keep the last good state.
# skip: drop the update of a step whose loss or gradients are not finite (counted, logged).
# (The functional form allows the member name `raise`, a Python keyword.)
NanPolicy = Enum("NanPolicy", {"raise": "raise", "skip": "skip"})


class DataSource(Enum):
    digits = "digits"
    breast_cancer = "breast_cancer"
    npz = "npz"
    table = "table"  # CSV or Parquet
    text = "text"  # a file or directory of text, as bytes (language modelling)


class DataTask(Enum):
    auto = "auto"  # strings/bools, or ints with <= 20 distinct values: classification
    classification = "classification"
    regression = "regression"


class DataValidation(Enum):
    error = "error"  # error-level findings (leakage, missing targets) stop the run
    warn = "warn"
    off = "off"


class TaskName(Enum):
    classification = "classification"
    regression = "regression"
    lm = "lm"


class MetricMode(Enum):
    max = "max"
    min = "min"


@dataclass
class TrainerConfig:
    steps: int = 2000  # total number of optimizer steps
    batch_size: int = 128  # examples per optimizer step, over all devices and processes
    eval_every: int = 500  # steps between evaluations on the full validation split
    eval_batch_size: int = 512  # examples per evaluation call (the last batch is padded)
    log_every: int = 100  # steps between metric fetches (the only host syncs in the loop)
    progress: ProgressMode = ProgressMode.auto  # console: live bar, log lines or nothing
    # auto: continue the unfinished run of this config (same run dir, or the latest
    # unfinished run with the identical config under runs/<name>/); never: always start
    # fresh; anything else: a run dir or checkpoint dir to start from (a new run).
    resume: str = "auto"
    # A non-finite loss or gradient: raise (stop, naming the step) or skip (drop that update).
    nan_policy: NanPolicy = NanPolicy["raise"]  # type: ignore[valid-type]
    log_batch_checksums: bool = False  # batch_checksums.jsonl: proves the batch sequence
    # Persistent XLA compilation cache: auto (~/.cache/jaxfw/xla or $XDG_CACHE_HOME), off,
    # or a directory. A second start of the same recipe skips compilation.
    compile_cache: str = "auto"
    grad_accum: int = 1  # microbatches per optimizer step (gradients averaged in the step)
    # Optimizer steps per compiled call (lax.scan over K stacked batches): removes the
    # host's per-call work for small models. auto: chosen from the first calls' timings
    # (a divisor of log_every, eval_every and checkpoint.every_steps, 1 to 64; recorded in
    # run.json); an integer K: that many, with steps before a boundary that a K-step call
    # would cross run one at a time (keep log_every, eval_every, every_steps multiples of K).
    steps_per_execution: str = "auto"
    # Place the next call's batches on the devices while the current call runs.
    prefetch: Prefetch = Prefetch.auto
    # [first, last] steps to trace with jax.profiler into the run's tb/ (profile plugin).
    profile_steps: list[int] = field(default_factory=list)
    peak_flops: float | None = None  # per device, for MFU; default: known chips / measured CPU
    precision: Precision = Precision.fp32  # compute dtype of the train step


@dataclass
class CheckpointConfig:
    enabled: bool = True  # save checkpoints (and resume from them)
    every_steps: int = 500  # 0: no step-based saves
    every_seconds: float | None = None  # also save when this much time has passed
    keep_last: int = 2  # the newest checkpoints kept
    keep_best: int = 1  # by task.best_metric / task.best_mode; 0: no best-k retention
    async_save: bool = True  # write in the background while training continues


@dataclass
class MeshConfig:
    """Device mesh axes; -1 takes the devices the other axes leave (at most one -1)."""

    data: int = -1  # data parallelism: batch split, parameters replicated
    fsdp: int = 1  # fully sharded data parallelism: batch and parameters/optimizer state split
    tensor: int = 1  # tensor parallelism: MLP/attention weights split
    # Logical axis name (used by models' annotations) -> mesh axis, list of axes, or null.
    rules: dict[str, Any] = field(
        default_factory=lambda: {
            "batch": ["data", "fsdp"],
            "embed": "fsdp",
            "mlp": "tensor",
            "heads": "tensor",
            "kv": None,
            "vocab": "tensor",
            "length": None,
        }
    )


class DistributedMode(Enum):
    auto = "auto"  # initialise when the environment describes a multi-process job
    on = "on"
    off = "off"


@dataclass
class DistributedConfig:
    """jax.distributed settings; unset values come from JAXFW_* env vars or JAX's own
    cluster detection (SLURM, Open MPI, TPU pods)."""

    mode: DistributedMode = DistributedMode.auto  # whether to call jax.distributed.initialize
    coordinator_address: str | None = None  # host:port of process 0
    num_processes: int | None = None  # processes in the job
    process_id: int | None = None  # this process's index, 0 .. num_processes - 1
    initialization_timeout_s: int = 300  # how long to wait for every process to join


@dataclass
class FaultConfig:
    """Fault injection, to exercise the recovery paths in tests and drills."""

    nan_at_step: int | None = None  # feed a batch of NaNs at this step
    kill_during_save_at_step: int | None = None  # SIGKILL itself while this save is in flight


@dataclass
class OptimizerConfig:
    name: OptimizerName = OptimizerName.adam  # the Optax optimizer
    lr: float = 1e-3  # peak learning rate; the schedule shapes it
    momentum: float = 0.0  # sgd only
    nesterov: bool = False  # sgd only
    b1: float = 0.9  # adam/adamw: decay of the first-moment average
    b2: float = 0.999  # adam/adamw: decay of the second-moment average
    eps: float = 1e-8  # adam/adamw: added to the denominator for stability
    weight_decay: float = 0.0  # decoupled (adamw) or added to the gradient (sgd, adam)
    weight_decay_mask: WeightDecayMask = WeightDecayMask.kernels  # which parameters decay
    clip_grad_norm: float | None = None  # clip by global norm before the update


@dataclass
class ScheduleConfig:
    name: ScheduleName = ScheduleName.constant  # the learning-rate schedule (Optax)
    warmup_steps: int = 0  # linear warm-up from 0 to optimizer.lr over these steps
    final_lr_fraction: float = 0.0  # lr at the last step, as a fraction of the peak


@dataclass
class DataConfig:
    source: DataSource = DataSource.digits  # where the examples come from
    path: str | None = None  # npz/table: the file; text: a file or folder (null: stdlib)
    test_fraction: float = 0.2  # stratified held-out test split, fixed by the seed
    val_fraction: float = 0.1  # of the rest, held out for evaluation during training
    scale: float = 1.0  # multiply inputs (before standardize)
    standardize: bool = False  # z-score features with train-split statistics
    validation: DataValidation = DataValidation.error  # data_report.json findings
    # data=table (CSV / Parquet)
    target: str | None = None  # column to predict (required for data=table)
    features: list[str] | None = None  # null: all columns but target and split_column
    categorical: list[str] = field(default_factory=list)  # force one-hot encoding
    numeric: list[str] = field(default_factory=list)  # force numbers (bad values named by row)
    task: DataTask = DataTask.auto  # data=table: what the target column is for
    split_column: str | None = None  # a column of train/val/test; null: split by seed
    streaming: bool = False  # Parquet: stream row groups through Grain
    missing_indicators: bool = False  # add <col>__missing features for numeric columns
    max_categories: int = 256  # one-hot the most frequent train categories, rest = unknown
    # data=text (byte-level language modelling)
    seq_len: int = 128  # tokens per example
    max_bytes: int | None = None  # keep the first N bytes (files in sorted path order)
    glob: str | None = None  # null: **/*.txt in a directory, **/*.py in the stdlib


@dataclass
class TaskConfig:
    name: TaskName = TaskName.classification  # the loss, metrics and predictions
    label_smoothing: float = 0.0  # classification: weight moved from the label to all classes
    best_metric: str = "eval/accuracy"  # tracked as the run's best metric
    best_mode: MetricMode = MetricMode.max  # whether a higher or lower best_metric is better
    # Computed at every training-time evaluation (eval/<name>); jaxfw-eval computes all.
    metrics: list[str] = field(default_factory=lambda: ["loss", "accuracy"])
    report_at_end: bool = True  # evaluate the best checkpoint on the test split into report/


@dataclass
class LoggerConfig:
    enabled: bool = True  # write config.yaml, run.json and metrics into the run dir
    jsonl: bool = True  # metrics.jsonl, one JSON object per logged step
    tensorboard: bool = True  # TensorBoard event files under tb/
    mlflow: bool = False  # also log params, metrics, tags and artifacts to MLflow (jaxfw[mlflow])
    # MLflow tracking URI; null: file:<working directory>/mlruns (a local file store).
    mlflow_uri: str | None = None
    mlflow_experiment: str | None = None  # MLflow experiment; null: the run's name


@dataclass
class Config:
    # Groups runs under runs/<name>/: the recipe's name (the default recipe: the stem of a
    # user's data.path, see compose.data_run_name); one directory name, checked in validate.py.
    name: str = MISSING
    seed: int = 0  # initialisation, data split and shuffling, dropout: one seed for all
    # Where the run writes (hydra.run.dir on the command line sets it too).
    run_dir: str = "runs/${name}/${now:%Y-%m-%d_%H-%M-%S}-${jaxfw.unique:}"
    # A Flax module by `_target_` plus its constructor arguments. `num_outputs: ???`
    # is filled from the data (number of classes) before the model is built.
    model: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    fault: FaultConfig = field(default_factory=FaultConfig)


def register_schema() -> None:
    """Store the schema as the first entry of conf/config.yaml's defaults list."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)
