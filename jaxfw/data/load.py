"""`load_dataset`: config + seed -> a checked, split, transformed and fingerprinted DataBundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxfw.data.bundle import DataBundle, Split
from jaxfw.data.checks import non_negative_int
from jaxfw.data.fingerprint import data_fingerprint
from jaxfw.data.preprocess import FeatureTransform
from jaxfw.data.settings import DataSettings
from jaxfw.data.sources import read_source
from jaxfw.data.split import stratified_split
from jaxfw.data.validate import checked_inputs, checked_targets
from jaxfw.errors import UserError

# Independent random streams under one user seed, so the val split is not a function of the
# test split's draws. The tag keeps them apart from the train shuffle's `[seed, epoch]`
# streams: numpy's SeedSequence treats trailing zeros as absent, so a plain (seed, 0) would
# replay epoch 0's shuffle.
_SPLIT_TAG = 0x73706C74  # "splt"
_TEST_STREAM, _VAL_STREAM = (_SPLIT_TAG, 1), (_SPLIT_TAG, 2)


def load_dataset(cfg: Any, seed: int) -> DataBundle:
    """Load the source named by `cfg.source` and split it train/val/test, stratified by class.

    Sources "table" (CSV/Parquet, see table.py) and "text" (byte windows, see text.py) have
    their own loaders; the array sources (bundled datasets, .npz) go through this function:

    test = `test_fraction` of each class; val = `val_fraction` of each class of the rest;
    train = the remainder. Inputs are multiplied by `scale` and, with `standardize`, z-scored
    with train-split statistics. The fingerprint covers the source arrays and all of this.
    """
    seed = non_negative_int(seed, "seed")
    settings = DataSettings.from_config(cfg)
    if settings.source == "table":
        from jaxfw.data.table import load_table

        return load_table(cfg, settings, seed)
    if settings.source == "text":
        from jaxfw.data.text import load_text

        return load_text(cfg, settings, seed)
    raw = read_source(settings)
    targets, num_classes = checked_targets(raw)
    inputs = checked_inputs(raw)
    fingerprint = data_fingerprint(
        {"inputs": raw.inputs, "targets": raw.targets}, settings.preprocessing(seed)
    )

    rest, test = stratified_split(targets, settings.test_fraction, (seed, *_TEST_STREAM))
    train_of_rest, val_of_rest = stratified_split(
        targets[rest], settings.val_fraction, (seed, *_VAL_STREAM)
    )
    roles = {"train": rest[train_of_rest], "val": rest[val_of_rest], "test": test}
    if min(len(index) for index in roles.values()) == 0:
        sizes = ", ".join(f"{role} {len(index)}" for role, index in roles.items())
        raise UserError(
            f"{raw.subject} has only {len(targets)} examples, too few "
            f"for data.test_fraction={settings.test_fraction} and "
            f"data.val_fraction={settings.val_fraction} ({sizes}); every split needs at least "
            "one example."
        )

    transform = FeatureTransform.fit(inputs[roles["train"]], settings.scale, settings.standardize)
    splits = {
        role: Split(transform.apply(inputs[index]), targets[index]) for role, index in roles.items()
    }
    return DataBundle(
        name=_bundle_name(settings),
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in inputs.shape[1:]),
        fingerprint=fingerprint,
        transform=transform,
        **splits,
    )


def _bundle_name(settings: DataSettings) -> str:
    """The source name, or for a user's file its stem ("mydata" for data/mydata.npz)."""
    if settings.source == "npz" and settings.path:
        return Path(settings.path).stem
    return str(settings.source)
