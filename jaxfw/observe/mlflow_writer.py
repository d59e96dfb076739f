"""`logger.mlflow=true`: the run's params, metrics, tags and files in an MLflow run.

One more writer behind the `MetricWriter` interface of writers.py (write / flush /
close), plus `set_tags` once run.json exists and `finish` with the run's status:

- params: the resolved config flattened (`optimizer.lr`), values cut to MLflow's limit;
- metrics: the names and steps of metrics.jsonl (characters MLflow refuses become `_`);
- tags: `jaxfw.run_id`, `jaxfw.run_dir`, `jaxfw.data_fingerprint`, the git commit;
- at the end: status FINISHED / FAILED / KILLED (interrupted, preempted), config.yaml
  and report/.

A run resumed in its own directory continues the same MLflow run (its id is kept in
`<run_dir>/mlflow.json`). MLflow's metric history is append-only: the steps a resumed run
redoes after its checkpoint are logged again (same step, a later timestamp). MLflow is
imported only here, and only when `logger.mlflow=true`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from jaxfw.errors import UserError
from jaxfw.observe.writers import _ContextManager

__all__ = ["MLFLOW_FILE", "MlflowWriter", "default_tracking_uri", "require_mlflow"]

MLFLOW_FILE = "mlflow.json"  # {"tracking_uri", "experiment_id", "run_id"} of the run dir
MISSING_MESSAGE = "logger.mlflow=true needs MLflow: pip install 'jaxfw[mlflow]'."

# MLflow's own limits (mlflow.utils.validation).
_MAX_KEY = 250
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 8000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_BAD_NAME_CHARS = re.compile(r"[^/\w.\- ]")

# run.json's status -> MLflow's RunStatus; anything else ended normally.
_STATUS = {
    "failed": "FAILED",
    "interrupted": "KILLED",
    "preempted": "KILLED",
    "pruned": "KILLED",  # stopped early by an Optuna pruner (jaxfw/sweep/pruning.py)
}


def require_mlflow() -> Any:
    """The `mlflow` module, or a UserError saying how to install it."""
    try:
        import mlflow  # optional (jaxfw[mlflow]): imported only when logger.mlflow=true
    except ImportError as exc:
        raise UserError(MISSING_MESSAGE) from exc
    return mlflow


def default_tracking_uri() -> str:
    """`logger.mlflow_uri=null`: a file store in `mlruns/` under the working directory
    (an explicit `file:` URI, so no database is needed whatever MLflow's own default;
    MLflow 3 allows it with MLFLOW_ALLOW_FILE_STORE=true, which the writer sets)."""
    return (Path.cwd() / "mlruns").resolve().as_uri()


def _name(key: str) -> str:
    return _BAD_NAME_CHARS.sub("_", key)[:_MAX_KEY]


def flatten_config(cfg: DictConfig) -> dict[str, str]:
    """`{"optimizer.lr": "0.001", ...}`: leaves of the resolved config as MLflow params."""
    flat: dict[str, str] = {}

    def visit(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                visit(value, f"{prefix}{key}.")
            return
        text = json.dumps(node) if isinstance(node, list | dict) else str(node)
        flat[_name(prefix.rstrip("."))] = text[:_MAX_PARAM_VALUE]

    visit(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


class MlflowWriter(_ContextManager):
    """Logs one jaxfw run to one MLflow run; `resume=True` continues the run dir's own."""

    def __init__(self, run_dir: str | Path, cfg: DictConfig, *, resume: bool = False) -> None:
        require_mlflow()
        # optional package: imported only when logger.mlflow=true
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.run_dir = Path(run_dir)
        self.tracking_uri = str(cfg.logger.mlflow_uri or default_tracking_uri())
        if "://" not in self.tracking_uri or self.tracking_uri.startswith("file:"):
            # MLflow 3 refuses its file store unless asked for it; a file URI asks for it.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        state_path = self.run_dir / MLFLOW_FILE
        saved = json.loads(state_path.read_text()) if state_path.exists() else None
        if resume and saved is not None and saved.get("tracking_uri") == self.tracking_uri:
            self.run_id = str(saved["run_id"])
            self.client.update_run(self.run_id, status="RUNNING")
            logged = self.client.get_run(self.run_id).data.params
        else:
            experiment_id = self._experiment(str(cfg.logger.mlflow_experiment or cfg.name))
            run = self.client.create_run(experiment_id, run_name=self.run_dir.name)
            self.run_id = run.info.run_id
            state = {"tracking_uri": self.tracking_uri, "experiment_id": experiment_id}
            state_path.write_text(json.dumps({**state, "run_id": self.run_id}, indent=2) + "\n")
            logged = {}
        # A param cannot change once logged: a resume with, e.g., more trainer.steps keeps
        # the first value (config.yaml, logged at the end, is the resumed run's own).
        params = [Param(k, v) for k, v in flatten_config(cfg).items() if k not in logged]
        for i in range(0, len(params), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + _PARAMS_PER_BATCH])
        self._ended = False

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except Exception:  # another job of a sweep created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags with a value (None is skipped), values cut to MLflow's limit."""
        from mlflow.entities import RunTag  # optional package, see __init__

        items = [RunTag(k, str(v)[:_MAX_TAG_VALUE]) for k, v in tags.items() if v is not None]
        if items:
            self.client.log_batch(self.run_id, tags=items)

    def tag_run(self, record: Mapping[str, Any]) -> None:
        """Tags from run.json's contents: the jaxfw run id, code and data versions."""
        git = record.get("git") or {}
        self.set_tags(
            {
                "mlflow.runName": record.get("run_id"),
                "jaxfw.run_id": record.get("run_id"),
                "jaxfw.run_dir": str(self.run_dir.resolve()),
                "jaxfw.data_fingerprint": record.get("data_fingerprint"),
                "jaxfw.git_dirty": git.get("dirty"),
                "mlflow.source.git.commit": git.get("commit"),
                "mlflow.source.git.branch": git.get("branch"),
            }
        )

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric  # optional package, see __init__

        if self._ended:
            raise RuntimeError(f"MlflowWriter for run {self.run_id} is closed")
        now = int(time.time() * 1000)
        batch = [Metric(_name(k), float(v), now, int(step)) for k, v in metrics.items()]
        for i in range(0, len(batch), _METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[i : i + _METRICS_PER_BATCH])

    def flush(self) -> None:
        """Every write is sent at once: nothing is buffered."""

    def finish(self, status: str) -> None:
        """Uploads config.yaml and report/ (when present), then ends the MLflow run with
        run.json's `status`: failed -> FAILED, interrupted or preempted -> KILLED,
        anything else (completed, a hook's own status) -> FINISHED."""
        if self._ended:
            return
        try:
            if (self.run_dir / "config.yaml").exists():
                self.client.log_artifact(self.run_id, str(self.run_dir / "config.yaml"))
            if (self.run_dir / "report").is_dir():
                self.client.log_artifacts(self.run_id, str(self.run_dir / "report"), "report")
        finally:
            self._ended = True
            self.client.set_terminated(self.run_id, status=_STATUS.get(status, "FINISHED"))

    def close(self) -> None:
        self.finish("completed")
