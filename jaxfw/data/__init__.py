"""Data for jaxfw: sources -> checked, split, fingerprinted bundles -> Grain batches.

Sources: bundled datasets (digits, breast_cancer), .npz arrays, CSV/Parquet tables
(`data=table`, optionally streamed row group by row group) and text as byte windows
(`data=text`). The numeric path uses numpy, pyarrow and Grain only (no JAX calls), so it can
be tested and reused without a device.
"""

from jaxfw.data.bundle import DataBundle, Split
from jaxfw.data.findings import check_findings, format_finding
from jaxfw.data.load import load_dataset
from jaxfw.data.pipeline import (
    IndexedBatches,
    eval_batches,
    train_batches,
    train_dataset,
    train_iterator,
)
from jaxfw.data.preprocess import FeatureTransform
from jaxfw.data.report import data_report, validate_data
from jaxfw.data.source_settings import validation_mode
from jaxfw.data.sources import SOURCES
from jaxfw.data.split import stratified_split
from jaxfw.data.streaming import StreamingSplit
from jaxfw.data.table_prep import TablePreprocessor

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
