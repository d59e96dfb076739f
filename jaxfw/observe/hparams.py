"""TensorBoard's HParams dashboard: a run's hyper-parameters, written into its tb/ dir.

At the end of a run (with `logger.tensorboard`) the flattened resolved config's scalar
values go out as the hparams plugin's session-start summary, and the run's status as
its session-end summary. TensorBoard's HParams dashboard then lists every run under
`tensorboard --logdir runs/` with its hyper-parameters; its metric columns are the
run's scalar tags (the final `eval/*`, `test/*` values are the last points of those).

No experiment summary (`_hparams_/experiment`) is written: TensorBoard reads only one
per logdir, so one run's would hide the keys of the others; without it TensorBoard
builds the table from every run's session-start summary.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams.summary_v2 import hparams_pb

from jaxfw.observe.runs_table import config_values

__all__ = ["hparam_values", "hparams_summaries", "write_hparams"]

log = logging.getLogger(__name__)

HParam = bool | int | float | str

_STATUS = {
    "completed": api_pb2.Status.STATUS_SUCCESS,
    "failed": api_pb2.Status.STATUS_FAILURE,
    "running": api_pb2.Status.STATUS_RUNNING,
}


def hparam_values(cfg: DictConfig | Mapping[str, Any]) -> dict[str, HParam]:
    """The resolved config as `{dotted.key: value}`: numbers, strings and bools as they
    are, lists (and None) as their JSON text; per-run keys such as run_dir left out."""
    plain = (
        OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        if isinstance(cfg, DictConfig)
        else dict(cfg)
    )
    assert isinstance(plain, dict)
    values: dict[str, HParam] = {}
    for key, value in config_values(plain).items():
        if isinstance(value, bool | int | float | str):
            values[key] = value
        else:  # lists, None, an empty mapping
            values[key] = json.dumps(value, default=str)
    return values


def hparams_summaries(
    values: Mapping[str, HParam], status: str, start_time_secs: float | None = None
) -> list[Any]:
    """The session-start (hyper-parameters) and session-end (status) summary protos."""
    return [
        hparams_pb(dict(values), start_time_secs=start_time_secs),
        _session_end_pb(_STATUS.get(status, api_pb2.Status.STATUS_UNKNOWN)),
    ]


def _session_end_pb(status: int) -> summary_pb2.Summary:
    """`tensorboard.plugins.hparams.summary.session_end_pb` without its TensorFlow import."""
    info = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    data = plugin_data_pb2.HParamsPluginData(session_end_info=info)
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.SESSION_END_INFO_TAG,
        metadata=metadata.create_summary_metadata(data),
        tensor=metadata.NULL_TENSOR,
    )
    return summary


def write_hparams(
    tb: Any, values: Mapping[str, HParam], status: str, start_time_secs: float | None = None
) -> None:
    """Writes the summaries through a TensorBoardWriter (`write_summary`) at step 0.

    Never raises: the dashboard entry is not worth failing a finished run for; a
    failure is logged as a warning."""
    try:
        for summary in hparams_summaries(values, status, start_time_secs):
            tb.write_summary(summary, step=0)
    except Exception as exc:
        log.warning("could not write the TensorBoard hparams summary: %s", exc)
