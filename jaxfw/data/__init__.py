"""Data for jaxfw: sources -> checked, stratified, fingerprinted splits -> Grain batches.

The numeric path uses numpy and Grain only (no JAX calls), so it can be tested and reused
without a device.
"""

from jaxfw.data.bundle import DataBundle, Split
from jaxfw.data.load import load_dataset
from jaxfw.data.pipeline import eval_batches, train_dataset, train_iterator
from jaxfw.data.preprocess import FeatureTransform
from jaxfw.data.sources import SOURCES
from jaxfw.data.split import stratified_split

__all__ = [
    "SOURCES",
    "DataBundle",
    "FeatureTransform",
    "Split",
    "eval_batches",
    "load_dataset",
    "stratified_split",
    "train_dataset",
    "train_iterator",
]
