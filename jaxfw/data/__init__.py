"""Data for jaxfw: sources -> checked, split, fingerprinted bundles -> Grain batches.

Sources: bundled datasets (digits, breast_cancer), .npz arrays, CSV/Parquet tables
(`data=table`, optionally streamed row group by row group) and text as byte windows
(`data=text`). The numeric path uses numpy, pyarrow and Grain only (no JAX calls), so it can
be tested and reused without a device.

Imports flow one way, each layer using only those before it:
types -> options -> splits, stats, encoding, fingerprint -> sources (arrays, npz, text,
tables) -> quality (tallies, row hashes, report, findings) -> loading (one bundle per source;
load.load_dataset picks the loader) -> batches (in memory, streaming) -> pipeline.
"""

from jaxfw.data.batches.memory import IndexedBatches, eval_batches, train_dataset
from jaxfw.data.load import load_dataset
from jaxfw.data.loading.streaming import StreamingSplit
from jaxfw.data.options import validation_mode
from jaxfw.data.pipeline import train_batches, train_iterator
from jaxfw.data.quality.data_report import data_report, validate_data
from jaxfw.data.quality.findings import check_findings, format_finding
from jaxfw.data.sources.arrays import SOURCES
from jaxfw.data.sources.tables.preprocessor import TablePreprocessor
from jaxfw.data.splits import stratified_split
from jaxfw.data.types import DataBundle, FeatureTransform, Split

__all__ = [
    "SOURCES",
    "DataBundle",
    "FeatureTransform",
    "IndexedBatches",
    "Split",
    "StreamingSplit",
    "TablePreprocessor",
    "check_findings",
    "data_report",
    "eval_batches",
    "format_finding",
    "load_dataset",
    "stratified_split",
    "train_batches",
    "train_dataset",
    "train_iterator",
    "validate_data",
    "validation_mode",
]
