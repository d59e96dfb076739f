"""`data=text`: files -> bytes -> windows for byte-level language modelling.

The bytes of the matched files (sorted by relative path, so the order is the same on every
machine) are concatenated, cut to `data.max_bytes`, and split by position: train is the
start, val the next `val_fraction` of what precedes test, test the last `test_fraction`.
Splitting by position rather than at random keeps neighbouring windows, which share most of
their text, on one side of the split. Each split is cut into windows of seq_len + 1 bytes
that overlap by one byte: inputs are the first seq_len, targets the last seq_len (the next
byte at every position), both int32 tokens 0..255.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from jaxfw.data.fingerprint import source_fingerprint
from jaxfw.data.options import DataOptions, TextOptions
from jaxfw.data.quality.data_report import array_report
from jaxfw.data.quality.findings import findings
from jaxfw.data.sources.text import VOCAB_SIZE, not_utf8, read_text_bytes, text_files, windows
from jaxfw.data.splits import position_ranges, require_every_split
from jaxfw.data.types import DataBundle


def load_text(cfg: Any, options: DataOptions, seed: int) -> DataBundle:
    """Byte windows of the configured text (see the module docstring)."""
    text = TextOptions.from_config(cfg)
    root, files, where = text_files(options.path, text.glob)
    tokens, parts = read_text_bytes(root, files, text.max_bytes)
    ranges = position_ranges(len(tokens), options)
    splits = {role: windows(tokens[span], text.seq_len) for role, span in ranges.items()}
    require_every_split(
        {role: len(split) for role, split in splits.items()},
        f"The text in {where} ({len(tokens)} bytes) is too short for data.seq_len="
        f"{text.seq_len} with",
        f"more than {text.seq_len} bytes",
        options,
        label="bytes per split: ",
        shown={role: span.stop - span.start for role, span in ranges.items()},
    )
    config = {"source": "text", **options.preprocessing(seed), **text.preprocessing()}
    config["stdlib"] = options.path is None
    bundle = DataBundle(
        name="stdlib" if options.path is None else Path(options.path).stem,
        num_classes=VOCAB_SIZE,
        input_shape=(text.seq_len,),
        fingerprint=source_fingerprint(list(parts), config),
        task_kind="lm",
        **splits,
    )
    # A user's text only: the stdlib holds a few deliberately Latin-1 test modules.
    bad = None if options.path is None else not_utf8(options.path, len(files), parts)
    if bad is None:
        return bundle
    report = array_report(bundle)
    report["not_utf8"] = bad
    report["findings"] = findings(report)
    return dataclasses.replace(bundle, report=report)
