"""Metric writers: metrics.jsonl, TensorBoard event files, and a fan-out of both.

Metric names are namespaced strings (`train/loss`, `eval/accuracy`); values are
floats. Writers never touch JAX: the trainer converts device values to host floats
before calling `write`, so the cost of that transfer stays visible in the loop.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self, runtime_checkable

import numpy as np
from tensorboard.compat.proto import (
    event_pb2,
    summary_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
)
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text.summary_v2 import text_pb
from tensorboard.summary import Output, Writer
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from jaxfw.json_values import decode_value, encode_float

__all__ = [
    "JsonlWriter",
    "MetricWriter",
    "MultiWriter",
    "TensorBoardWriter",
    "read_jsonl",
]

# Keys every jsonl record carries; a metric with one of these names would silently
# overwrite them, so it is refused instead.
_RESERVED_KEYS = frozenset({"step", "time"})

# What tensorboard.summary.Writer.add_scalar attaches to every scalar value.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=scalar_metadata.PLUGIN_NAME),
    data_class=summary_pb2.DataClass.DATA_CLASS_SCALAR,
)


@runtime_checkable
class MetricWriter(Protocol):
    """Anything that records `{name: value}` metrics at a training step."""

    def write(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class _ContextManager:
    """`with Writer(...) as w:` closes the writer even when training raises."""

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class JsonlWriter(_ContextManager):
    """Appends `{"step": ..., "time": ..., **metrics}` lines to a jsonl file.

    - Every line is handed to the OS as soon as it is written (line buffering), so a
      crashed or killed process loses nothing already logged. There is no fsync per
      line: surviving a power cut is not worth a disk sync every log step.
    - Opening an existing file appends, so a resumed run continues the same file. A
      half-written last line left by a kill is cut off first, so the new records
      do not glue onto it and the file stays one valid object per line.
    - Non-finite values are written as the strings "nan", "inf", "-inf" (see
      `jaxfw.json_values`); `read_jsonl` turns them back into floats.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _drop_partial_last_line(self.path)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8", buffering=1)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if self._file is None:
            raise RuntimeError(f"JsonlWriter for {self.path} is closed")
        clash = _RESERVED_KEYS.intersection(metrics)
        if clash:
            raise ValueError(
                f"metric names {sorted(clash)} are reserved in {self.path.name}; "
                "use namespaced names such as 'train/step_time'"
            )
        record: dict[str, Any] = {"step": int(step), "time": time.time()}
        for name, value in metrics.items():
            record[name] = encode_float(float(value))
        # allow_nan=False: a non-finite value that slipped past encode_float must
        # fail loudly here rather than produce a line no JSON parser accepts.
        self._file.write(json.dumps(record, allow_nan=False) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _drop_partial_last_line(path: Path) -> None:
    """Truncates `path` after its last newline (a no-op for missing/clean files)."""
    try:
        with path.open("rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            # Records are short, so scanning back in small blocks finds the last
            # complete line quickly even in a long file.
            end = size
            while end > 0:
                start = max(0, end - 4096)
                f.seek(start)
                cut = f.read(end - start).rfind(b"\n")
                if cut >= 0:
                    f.truncate(start + cut + 1)
                    return
                end = start
            f.truncate(0)
    except FileNotFoundError:
        return


def truncate_jsonl(path: str | os.PathLike[str], last_step: int) -> None:
    """Drop records with `step` > `last_step` (a resumed run redoes those steps).

    Rewritten atomically (temp file + rename): a crash here leaves the old file whole.
    """
    path = Path(path)
    if not path.exists():
        return
    _drop_partial_last_line(path)
    kept = [
        line
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
        if line.strip() and json.loads(line).get("step", 0) <= last_step
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Reads a metrics.jsonl file back; "nan"/"inf"/"-inf" strings become floats."""
    records = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                records.append({k: decode_value(v) for k, v in json.loads(line).items()})
    return records


class _EventFileOutput(Output):
    """A `tensorboard.summary.Output` that also writes arbitrary summary protos.

    `tensorboard.summary.Writer` only knows scalars, and its own `DirectoryOutput`
    hides its event file. Owning the `EventFileWriter` here puts scalars (through
    the public Writer API) and text/histogram protos into ONE event file per writer,
    so their order on disk is the order they were written.
    """

    def __init__(self, logdir: str, flush_secs: float) -> None:
        self._events = EventFileWriter(logdir, flush_secs=flush_secs)

    def emit_scalar(
        self,
        *,
        plugin_name: str,
        tag: str,
        data: Any,
        step: Any,
        wall_time: float,
        tag_metadata: bytes | None = None,
        description: str | None = None,
    ) -> None:
        # Same proto as tensorboard.summary._output.DirectoryOutput.emit_scalar.
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(
                plugin_name=plugin_name, content=tag_metadata
            ),
            summary_description=description,
            data_class=summary_pb2.DataClass.DATA_CLASS_SCALAR,
        )
        summary = summary_pb2.Summary()
        summary.value.add(tag=tag, tensor=tensor_util.make_tensor_proto(data), metadata=metadata)
        self.emit_summary(summary, int(step), wall_time)

    def emit_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """All of a step's scalars as ONE event (a Summary with one value per tag, the
        same value protos `emit_scalar` writes). One event per log point instead of one
        per metric: each event is a queue hand-off to the writer thread plus a CRC in
        Python, which dominated the loop's host work at log points."""
        summary = summary_pb2.Summary()
        for tag, value in scalars.items():
            summary.value.add(
                tag=tag,
                tensor=tensor_pb2.TensorProto(
                    dtype=types_pb2.DT_FLOAT,
                    tensor_shape=tensor_shape_pb2.TensorShapeProto(),
                    float_val=[float(value)],
                ),
                metadata=_SCALAR_METADATA,
            )
        self.emit_summary(summary, step)

    def emit_summary(self, summary: Any, step: int, wall_time: float | None = None) -> None:
        event = event_pb2.Event(
            wall_time=time.time() if wall_time is None else wall_time,
            step=int(step),
            summary=summary,
        )
        self._events.add_event(event)

    def emit_start(self, step: int) -> None:
        # SessionLog.START: after the first one, TensorBoard drops every event at or
        # after `step` written before it ("purge orphaned data"), so a resumed run
        # shows no duplicate steps.
        start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
        self._events.add_event(
            event_pb2.Event(wall_time=time.time(), step=int(step), session_log=start)
        )

    def flush(self) -> None:
        self._events.flush()

    def close(self) -> None:
        self._events.close()


class TensorBoardWriter(_ContextManager):
    """Writes TensorBoard event files under `logdir`, without TensorFlow.

    A log point's scalars go out as one event of the scalars plugin; text (e.g. the
    resolved config) and histograms are written as the text/histogram plugins' protos.
    Event files are flushed every `flush_secs` by TensorBoard's background thread and on
    `flush()`/`close()`.
    """

    def __init__(self, logdir: str | os.PathLike[str], *, flush_secs: float = 10.0) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._output = _EventFileOutput(str(self.logdir), flush_secs)
        self._writer = Writer(self._output)
        self._closed = False

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        self._check_open()
        if metrics:
            self._output.emit_scalars(int(step), metrics)

    def mark_start(self, step: int) -> None:
        """Declare that the run (re)starts at `step`. TensorBoard treats the first such
        marker as the run's start and each later one as a restart that voids the
        earlier events at >= `step`, so write one when a run starts and one per resume."""
        self._check_open()
        self._writer.flush()  # scalars buffered by the Writer belong before the marker
        self._output.emit_start(step)

    def write_text(self, tag: str, text: str, step: int = 0) -> None:
        """Writes `text` (rendered as Markdown by TensorBoard's text dashboard)."""
        self._check_open()
        self._output.emit_summary(text_pb(tag, text), step)

    def write_summary(self, summary: summary_pb2.Summary, step: int = 0) -> None:
        """Writes a ready-made Summary proto (e.g. the hparams plugin's, hparams.py)."""
        self._check_open()
        self._output.emit_summary(summary, step)

    def write_histogram(
        self, tag: str, values: Sequence[float] | Any, step: int, *, buckets: int = 30
    ) -> None:
        """Writes a histogram of `values` (anything `numpy.asarray` accepts)."""
        self._check_open()
        data = np.asarray(values, dtype=np.float64).ravel()
        self._output.emit_summary(histogram_pb(tag, data, buckets=buckets), step)

    def flush(self) -> None:
        if not self._closed:
            self._writer.flush()

    def close(self) -> None:
        if not self._closed:
            self._writer.close()
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"TensorBoardWriter for {self.logdir} is closed")


class MultiWriter(_ContextManager):
    """Sends every call to several writers (e.g. jsonl + TensorBoard)."""

    def __init__(self, writers: Iterable[MetricWriter]) -> None:
        self.writers: list[MetricWriter] = list(writers)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        for writer in self.writers:
            writer.write(step, metrics)

    def write_text(self, tag: str, text: str, step: int = 0) -> None:
        """Forwards to the writers that can show text (TensorBoard); others skip it."""
        for writer in self.writers:
            write_text = getattr(writer, "write_text", None)
            if write_text is not None:
                write_text(tag, text, step)

    def flush(self) -> None:
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        # Close every writer even if one fails, so one broken sink does not leave the
        # others' files unflushed; the first error is re-raised afterwards.
        first_error: BaseException | None = None
        for writer in self.writers:
            try:
                writer.close()
            except Exception as error:  # re-raised below, after the others closed
                first_error = first_error or error
        if first_error is not None:
            raise first_error
