"""Bundles of the array sources (bundled datasets, .npz): checked, split stratified by class,
scaled or standardized with train statistics, fingerprinted."""

from __future__ import annotations

from pathlib import Path

from jaxfw.data.fingerprint import data_fingerprint
from jaxfw.data.options import DataOptions
from jaxfw.data.sources.arrays import checked_inputs, checked_targets, read_source
from jaxfw.data.splits import require_every_split, split_indices
from jaxfw.data.types import DataBundle, FeatureTransform, Split


def load_arrays(options: DataOptions, seed: int) -> DataBundle:
    """test = `test_fraction` of each class; val = `val_fraction` of each class of the rest;
    train = the remainder. Inputs are multiplied by `scale` and, with `standardize`, z-scored
    with train-split statistics. The fingerprint covers the source arrays and all of this."""
    raw = read_source(options)
    targets, num_classes = checked_targets(raw)
    inputs = checked_inputs(raw)
    fingerprint = data_fingerprint(
        {"inputs": raw.inputs, "targets": raw.targets}, options.preprocessing(seed)
    )
    roles = split_indices(targets, options, seed)
    require_every_split(
        {role: len(index) for role, index in roles.items()},
        f"{raw.subject} has only {len(targets)} examples, too few for",
        "at least one example",
        options,
    )
    transform = FeatureTransform.fit(inputs[roles["train"]], options.scale, options.standardize)
    splits = {
        role: Split(transform.apply(inputs[index]), targets[index]) for role, index in roles.items()
    }
    return DataBundle(
        name=_bundle_name(options),
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in inputs.shape[1:]),
        fingerprint=fingerprint,
        transform=transform,
        feature_names=raw.feature_names,
        **splits,
    )


def _bundle_name(options: DataOptions) -> str:
    """The source name, or for a user's file its stem ("mydata" for data/mydata.npz)."""
    if options.source == "npz" and options.path:
        return Path(options.path).stem
    return str(options.source)
