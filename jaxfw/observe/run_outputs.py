"""A run directory's files: config.yaml, run.json, metrics.jsonl, tb/ and (optionally)
batch_checksums.jsonl.

A run resumed in its own directory continues these files: records after the restored
step are dropped (those steps run again) and TensorBoard is told to forget them, so
the history has no duplicated steps. With `logger.enabled=false` (e.g. `debug=fast`)
nothing is written; metric records are still kept in memory for the caller.
"""

import os
import secrets
import socket
import time
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxfw.observe.hparams import hparam_values, write_hparams
from jaxfw.observe.mlflow_writer import MlflowWriter
from jaxfw.observe.run_info import RUN_FILE, RunRecord
from jaxfw.observe.writers import JsonlWriter, MultiWriter, TensorBoardWriter, truncate_jsonl

METRICS_FILE = "metrics.jsonl"
BATCH_LOG_FILE = "batch_checksums.jsonl"


def new_run_id(name: str) -> str:
    """Unique across runs, whatever directory the run is in (sweep jobs are 0, 1, ...)."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def batch_checksum(batch: dict[str, np.ndarray]) -> int:
    """CRC32 over a batch's arrays in key order: equal batches, equal checksums."""
    crc = 0
    for key in sorted(batch):
        crc = zlib.crc32(np.ascontiguousarray(batch[key]).tobytes(), crc)
    return crc


class RunOutputs:
    def __init__(self, run_dir: Path, cfg: DictConfig, resumed_step: int | None = None) -> None:
        """`resumed_step`: this run dir's own run continues after that step."""
        self.run_dir = run_dir
        # In a multi-process job only process 0 writes the run's files (checkpoints are
        # written by every process, cooperatively, through Orbax).
        self.enabled = bool(cfg.logger.enabled) and jax.process_index() == 0
        self.resumed_step = resumed_step
        self.history: list[dict[str, Any]] = []
        self._record: RunRecord | None = None
        self._batch_log: JsonlWriter | None = None
        self._hparams: tuple[TensorBoardWriter, dict[str, Any], float] | None = None
        self._mlflow: MlflowWriter | None = None
        self._closed = False
        writers: list[Any] = []
        if self.enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
            if resumed_step is not None:
                truncate_jsonl(run_dir / METRICS_FILE, resumed_step)
                truncate_jsonl(run_dir / BATCH_LOG_FILE, resumed_step)
            if cfg.logger.jsonl:
                writers.append(JsonlWriter(run_dir / METRICS_FILE))
            if cfg.logger.tensorboard:
                tb = TensorBoardWriter(run_dir / "tb")
                if resumed_step is not None:
                    tb.mark_start(resumed_step + 1)
                else:
                    tb.mark_start(0)
                    tb.write_text("config", f"```\n{OmegaConf.to_yaml(cfg)}```", step=0)
                writers.append(tb)
                self._hparams = (tb, hparam_values(cfg), time.time())  # see hparams.py
            if cfg.logger.get("mlflow", False):  # plus tags and a status: mlflow_writer.py
                self._mlflow = MlflowWriter(run_dir, cfg, resume=resumed_step is not None)
                writers.append(self._mlflow)
            if cfg.trainer.log_batch_checksums:
                self._batch_log = JsonlWriter(run_dir / BATCH_LOG_FILE)
        self._writers = MultiWriter(writers)

    def start(self, cfg: DictConfig, **fields: Any) -> str:
        """Create run.json (or mark the existing one resumed); returns the run id."""
        process = {"pid": os.getpid(), "hostname": socket.gethostname()}
        if not self.enabled:
            return new_run_id(str(cfg.name))
        if self.resumed_step is not None and (self.run_dir / RUN_FILE).exists():
            self._record = RunRecord.load(self.run_dir)
            self._record.resume(step=self.resumed_step, **process)
            self._record.update(**process, **fields)
        else:
            self._record = RunRecord.create(
                self.run_dir,
                new_run_id(str(cfg.name)),
                int(cfg.seed),
                str(cfg.name),
                extra={**process, **fields},
            )
        if self._mlflow is not None:
            self._mlflow.tag_run(self._record.data)
        return str(self._record.data["run_id"])

    def update(self, **fields: Any) -> None:
        if self._record is not None:
            self._record.update(**fields)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self.history.append({"step": step, **metrics})
        self._writers.write(step, metrics)

    def log_batch(self, step: int, batch: dict[str, np.ndarray]) -> None:
        if self._batch_log is not None:
            self._batch_log.write(step, {"batch/crc32": batch_checksum(batch)})

    def close(self, status: str) -> None:
        """Close the metric files (once), the last thing before run.json's final record:
        the trainer times it as part of the run's shutdown."""
        if self._closed:
            return
        self._closed = True
        # TensorBoard's HParams dashboard. Not for a failed run: its failure may be a
        # full disk, where TensorBoard's writer thread would print a traceback.
        if self._hparams is not None and status != "failed":
            write_hparams(self._hparams[0], self._hparams[1], status, self._hparams[2])
        try:
            if self._mlflow is not None:
                self._mlflow.finish(status)  # before close(): close() means "completed"
        finally:
            self._writers.close()
        if self._batch_log is not None:
            self._batch_log.close()

    def finish(self, status: str, **fields: Any) -> None:
        """Close the files and record the status; run.json is written even when closing
        a writer fails (e.g. its last flush on a full disk)."""
        try:
            self.close(status)
        finally:
            if self._record is not None:
                self._record.finish(status, **fields)
