"""A run directory's files: config.yaml, run.json, metrics.jsonl and tb/.

With `logger.enabled=false` (e.g. `debug=fast`) nothing is written; metric records
are still kept in memory for the caller.
"""

import secrets
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from jaxfw.observe import JsonlWriter, MultiWriter, RunRecord, TensorBoardWriter


def new_run_id(name: str) -> str:
    """Unique across runs, whatever directory the run is in (sweep jobs are 0, 1, ...)."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


class RunOutputs:
    def __init__(self, run_dir: Path, cfg: DictConfig) -> None:
        self.run_dir = run_dir
        self.enabled = bool(cfg.logger.enabled)
        self.history: list[dict[str, Any]] = []
        self._record: RunRecord | None = None
        writers: list[Any] = []
        if self.enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
            if cfg.logger.jsonl:
                writers.append(JsonlWriter(run_dir / "metrics.jsonl"))
            if cfg.logger.tensorboard:
                tb = TensorBoardWriter(run_dir / "tb")
                tb.write_text("config", f"```\n{OmegaConf.to_yaml(cfg)}```", step=0)
                writers.append(tb)
        self._writers = MultiWriter(writers)

    def start(self, cfg: DictConfig, **fields: Any) -> None:
        if self.enabled:
            self._record = RunRecord.create(
                self.run_dir, new_run_id(str(cfg.name)), int(cfg.seed), str(cfg.name), extra=fields
            )

    def update(self, **fields: Any) -> None:
        if self._record is not None:
            self._record.update(**fields)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self.history.append({"step": step, **metrics})
        self._writers.write(step, metrics)

    def finish(self, status: str, **fields: Any) -> None:
        self._writers.close()
        if self._record is not None:
            self._record.finish(status, **fields)
