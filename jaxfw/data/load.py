"""`load_dataset`: the `data` config + seed -> a checked, split, fingerprinted DataBundle."""

from __future__ import annotations

from typing import Any

from jaxfw.data.loading.arrays import load_arrays
from jaxfw.data.loading.tables import load_table
from jaxfw.data.loading.text import load_text
from jaxfw.data.options import DataOptions, non_negative_int
from jaxfw.data.types import DataBundle


def load_dataset(cfg: Any, seed: int) -> DataBundle:
    """Load the source named by `cfg.source` and split it train/val/test.

    "table" (CSV/Parquet, see loading/tables.py) and "text" (byte windows, see
    loading/text.py) have their own loaders; every other source is an array source
    (bundled datasets, .npz; see loading/arrays.py), split stratified by class.
    """
    seed = non_negative_int(seed, "seed")
    options = DataOptions.from_config(cfg)
    if options.source == "table":
        return load_table(cfg, options, seed)
    if options.source == "text":
        return load_text(cfg, options, seed)
    return load_arrays(options, seed)
