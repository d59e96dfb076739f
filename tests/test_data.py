"""Tests for jaxfw.data: sources, stratified splits, fingerprints, and the batch pipelines.

Real components on small data: sklearn's bundled digits, tiny .npz files in tmp_path, and
Grain iterators; scikit-learn appears only as a reference for split sizes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import grain
import numpy as np
import pytest

from jaxfw.config.schema import DataConfig, DataTask
from jaxfw.data import (
    DataBundle,
    Split,
    eval_batches,
    load_dataset,
    stratified_split,
    train_iterator,
)
from jaxfw.data.options import DataOptions, TableOptions, TextOptions, read_config
from jaxfw.data.splits import require_every_split
from jaxfw.errors import UserError

CLASS_SIZES = (100, 60, 40)  # deliberately imbalanced, to make stratification visible


def data_cfg(**overrides: object) -> SimpleNamespace:
    """A `data` config as an attribute object; load_dataset must accept it like a DictConfig."""
    values: dict[str, object] = {
        "source": "npz",
        "path": None,
        "test_fraction": 0.2,
        "val_fraction": 0.1,
        "standardize": False,
        "scale": 1.0,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def synthetic_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs whose column 0 is the example id (to trace examples through splits), column 1
    is noise, column 2 is constant (std 0); labels in shuffled order."""
    rng = np.random.default_rng(seed)
    targets = rng.permutation(np.repeat(np.arange(len(CLASS_SIZES)), CLASS_SIZES))
    n = len(targets)
    inputs = np.stack(
        [np.arange(n, dtype=np.float64), rng.normal(3.0, 5.0, n), np.full(n, 7.0)], axis=1
    )
    return inputs, targets.astype(np.int64)


def write_npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def npz_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    inputs, targets = synthetic_arrays()
    return write_npz(
        tmp_path_factory.mktemp("data") / "synthetic.npz", inputs=inputs, targets=targets
    )


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    return load_dataset(data_cfg(source="digits", scale=1 / 16, standardize=True), seed=0)


def ids(split: Split, scale: float = 1.0) -> np.ndarray:
    """The example ids of an unstandardized split (column 0, divided by data.scale)."""
    return np.rint(split.inputs[:, 0] / scale).astype(np.int64)


# --- bundled sources and split sizes -------------------------------------------------------


def test_digits_bundle_shapes_dtypes_and_sizes_match_sklearn(digits: DataBundle) -> None:
    from sklearn.model_selection import train_test_split

    n = 1797
    labels = np.arange(n) % 10  # sizes only depend on n and the fractions
    rest, test = train_test_split(np.arange(n), test_size=0.2, stratify=labels, random_state=0)
    train, val = train_test_split(rest, test_size=0.1, stratify=labels[rest], random_state=0)

    assert (len(digits.train), len(digits.val), len(digits.test)) == (
        len(train),
        len(val),
        len(test),
    )
    assert digits.name == "digits"
    assert digits.num_classes == 10 and digits.input_shape == (64,)
    for split in (digits.train, digits.val, digits.test):
        assert split.inputs.dtype == np.float32 and split.targets.dtype == np.int32
        assert split.inputs.shape[1:] == (64,)
        assert not split.inputs.flags.writeable  # fingerprinted data cannot be mutated


def test_breast_cancer_bundle() -> None:
    bundle = load_dataset(data_cfg(source="breast_cancer"), seed=3)
    assert bundle.num_classes == 2 and bundle.input_shape == (30,)
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 569


def test_summary_is_json_and_consistent(digits: DataBundle) -> None:
    summary = json.loads(json.dumps(digits.summary()))
    assert summary["sizes"] == {"train": 1293, "val": 144, "test": 360}
    assert summary["num_classes"] == 10 and summary["input_shape"] == [64]
    assert summary["fingerprint"] == digits.fingerprint and len(digits.fingerprint) == 64
    assert sum(summary["class_counts"]["train"]) == 1293


def test_splits_are_stratified(digits: DataBundle) -> None:
    counts = {
        role: np.bincount(getattr(digits, role).targets, minlength=10)
        for role in ("train", "val", "test")
    }
    total = counts["train"] + counts["val"] + counts["test"]
    # Each class's share of test is test_fraction up to the rounding of one example.
    assert np.all(np.abs(counts["test"] - 0.2 * total) <= 1)
    rest = total - counts["test"]
    assert np.all(np.abs(counts["val"] - 0.1 * rest) <= 1)


# --- stratified_split -----------------------------------------------------------------------


def test_stratified_split_partitions_exactly_and_is_sorted() -> None:
    _, targets = synthetic_arrays()
    keep, held = stratified_split(targets, 0.25, seed=5)
    assert np.all(np.diff(keep) > 0) and np.all(np.diff(held) > 0)
    assert np.intersect1d(keep, held).size == 0
    assert np.array_equal(np.sort(np.concatenate([keep, held])), np.arange(len(targets)))
    assert len(held) == 50  # ceil(0.25 * 200)
    # 25% of (100, 60, 40) is exactly (25, 15, 10): stratification leaves no slack here.
    assert np.bincount(targets[held]).tolist() == [25, 15, 10]


def test_stratified_split_total_is_exact_when_classes_round_unevenly() -> None:
    targets = np.repeat([0, 1, 2], [7, 7, 7])
    _, held = stratified_split(targets, 0.5, seed=0)
    assert len(held) == 11  # ceil(10.5), not 3 * round(3.5)
    assert np.all(np.abs(np.bincount(targets[held]) - 3.5) <= 1)


def test_stratified_split_determinism_and_seed_sensitivity() -> None:
    _, targets = synthetic_arrays()
    first = stratified_split(targets, 0.3, seed=1)
    again = stratified_split(targets, 0.3, seed=1)
    other = stratified_split(targets, 0.3, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_stratified_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(np.array([0, 1, 0, 1]), fraction, seed=0)


# --- load_dataset on a user's npz -------------------------------------------------------------


def test_npz_splits_are_disjoint_and_cover_everything(npz_path: str) -> None:
    bundle = load_dataset(data_cfg(path=npz_path), seed=0)
    parts = [ids(bundle.train), ids(bundle.val), ids(bundle.test)]
    every = np.concatenate(parts)
    assert len(every) == sum(CLASS_SIZES)
    assert np.array_equal(np.sort(every), np.arange(sum(CLASS_SIZES)))  # union, no overlap
    assert bundle.name == "synthetic" and bundle.num_classes == 3 and bundle.input_shape == (3,)
    # Labels travel with their example.
    _, targets = synthetic_arrays()
    assert np.array_equal(bundle.test.targets, targets[ids(bundle.test)])


def test_same_seed_same_split_other_seed_other_split(npz_path: str) -> None:
    a = load_dataset(data_cfg(path=npz_path), seed=0)
    b = load_dataset(data_cfg(path=npz_path), seed=0)
    c = load_dataset(data_cfg(path=npz_path), seed=1)
    for role in ("train", "val", "test"):
        assert np.array_equal(getattr(a, role).inputs, getattr(b, role).inputs)
        assert np.array_equal(getattr(a, role).targets, getattr(b, role).targets)
    assert not np.array_equal(ids(a.test), ids(c.test))
    assert not np.array_equal(ids(a.val), ids(c.val))


def test_standardize_uses_train_statistics_only(npz_path: str) -> None:
    plain = load_dataset(data_cfg(path=npz_path, scale=0.5), seed=0)
    std = load_dataset(data_cfg(path=npz_path, scale=0.5, standardize=True), seed=0)
    raw_inputs, _ = synthetic_arrays()

    assert np.allclose(plain.train.inputs, raw_inputs[ids(plain.train, 0.5)] * 0.5)  # scale only

    train = std.train.inputs
    assert np.allclose(train[:, :2].mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(train[:, :2].std(axis=0), 1.0, atol=1e-5)
    assert np.all(train[:, 2] == 0.0)  # constant feature: std 0 -> 1, so it stays at 0

    scaled_train = raw_inputs[ids(plain.train, 0.5)] * 0.5
    mean, sd = scaled_train.mean(axis=0), scaled_train.std(axis=0)
    sd[sd == 0] = 1.0
    for role in ("val", "test"):
        raw = raw_inputs[ids(getattr(plain, role), 0.5)] * 0.5
        expected = (raw - mean) / sd
        assert np.allclose(getattr(std, role).inputs, expected, atol=1e-5)
        # With its own statistics the split would be centred exactly; with train's it is not.
        assert not np.allclose(getattr(std, role).inputs[:, 1].mean(), 0.0, atol=1e-6)
    assert std.transform.mean is not None
    assert np.allclose(std.transform.apply(raw_inputs[:5]), (raw_inputs[:5] * 0.5 - mean) / sd)


# --- fingerprint -----------------------------------------------------------------------------


def test_fingerprint_is_stable_and_tracks_data_and_config(tmp_path: Path, npz_path: str) -> None:
    base = load_dataset(data_cfg(path=npz_path), seed=0).fingerprint
    assert load_dataset(data_cfg(path=npz_path), seed=0).fingerprint == base

    inputs, targets = synthetic_arrays()
    same = write_npz(tmp_path / "copy.npz", inputs=inputs, targets=targets)
    assert load_dataset(data_cfg(path=same), seed=0).fingerprint == base  # content, not file

    changed = inputs.copy()
    changed.view(np.uint8)[-1] ^= 1  # one byte of one value
    edited = write_npz(tmp_path / "edited.npz", inputs=changed, targets=targets)
    assert load_dataset(data_cfg(path=edited), seed=0).fingerprint != base

    variants = [
        load_dataset(data_cfg(path=npz_path), seed=1),
        load_dataset(data_cfg(path=npz_path, test_fraction=0.3), seed=0),
        load_dataset(data_cfg(path=npz_path, val_fraction=0.2), seed=0),
        load_dataset(data_cfg(path=npz_path, scale=2.0), seed=0),
        load_dataset(data_cfg(path=npz_path, standardize=True), seed=0),
    ]
    prints = [bundle.fingerprint for bundle in variants]
    assert base not in prints and len(set(prints)) == len(prints)


# --- user errors -----------------------------------------------------------------------------


def assert_one_sentence(error: pytest.ExceptionInfo[UserError], *needles: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message.endswith(".")
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


def test_npz_path_not_set() -> None:
    with pytest.raises(UserError) as error:
        load_dataset(data_cfg(path=None), seed=0)
    assert_one_sentence(error, "data.path")


def test_npz_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.npz")
    with pytest.raises(UserError) as error:
        load_dataset(data_cfg(path=missing), seed=0)
    assert str(error.value) == f"Data file '{missing}' does not exist (data.path)."


@pytest.mark.parametrize("content", [b"not a zip at all\n", b"PK\x03\x04broken"])
def test_npz_unreadable_file(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    with pytest.raises(UserError) as error:
        load_dataset(data_cfg(path=str(bad)), seed=0)
    assert_one_sentence(error, str(bad), "not a readable .npz")


def test_npy_instead_of_npz(tmp_path: Path) -> None:
    path = tmp_path / "single.npy"
    np.save(path, np.zeros((4, 2)))
    with pytest.raises(UserError) as error:
        load_dataset(data_cfg(path=str(path)), seed=0)
    assert_one_sentence(error, str(path), ".npy")


def test_npz_missing_arrays_lists_what_is_there(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "x.npz", X=np.zeros((10, 2)), y=np.zeros(10))
    with pytest.raises(UserError) as error:
        load_dataset(data_cfg(path=path), seed=0)
    assert_one_sentence(error, path, "'inputs'", "'X'", "'y'")


def bad_npz(tmp_path: Path, inputs: np.ndarray, targets: np.ndarray) -> str:
    return write_npz(tmp_path / "bad.npz", inputs=inputs, targets=targets)


@pytest.mark.parametrize(
    ("inputs", "targets", "needles"),
    [
        (np.zeros((10, 2)), np.zeros(9, int), ["10 inputs", "9 targets"]),
        (np.zeros((6, 2)), np.array([0, 1, 1.5, 0, 1, 0]), ["1.5", "example 2"]),
        (np.zeros((6, 2)), np.array([0, 1, -1, 0, 1, 0]), ["-1", "negative"]),
        (np.zeros((6, 2)), np.array(list("abcabc")), ["<U1"]),
        (np.zeros((6, 2)), np.zeros(6, int), ["only 1 class", "label 0"]),
        (np.zeros((2, 2)), np.array([0, 1]), ["2 examples", "data.test_fraction=0.2"]),
        (np.zeros((6, 2)), np.eye(6, 2, dtype=int), ["(6, 2)", "one-hot"]),
        (np.zeros(6), np.array([0, 1] * 3), ["shape (6,)"]),
        (np.array([[0.0], [np.nan], [1], [2], [3], [4]]), np.array([0, 1] * 3), ["example 1"]),
    ],
    ids=[
        "length",
        "fractional",
        "negative",
        "strings",
        "one-class",
        "too-few",
        "one-hot",
        "1d-inputs",
        "nan",
    ],
)
def test_npz_content_errors(
    tmp_path: Path, inputs: np.ndarray, targets: np.ndarray, needles: list[str]
) -> None:
    path = bad_npz(tmp_path, inputs, targets)
    with pytest.raises(UserError) as error:
        load_dataset(data_cfg(path=path), seed=0)
    assert_one_sentence(error, path, *needles)


def test_whole_valued_float_labels_are_accepted(tmp_path: Path) -> None:
    inputs, targets = synthetic_arrays()
    path = write_npz(tmp_path / "f.npz", inputs=inputs, targets=targets.astype(np.float32))
    bundle = load_dataset(data_cfg(path=path), seed=0)
    assert bundle.train.targets.dtype == np.int32 and bundle.num_classes == 3


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        ({"source": "mnist"}, ["'mnist'", "'breast_cancer'", "'digits'", "'npz'"]),
        ({"source": "digits", "test_fraction": 1.5}, ["data.test_fraction=1.5"]),
        ({"source": "digits", "val_fraction": 0}, ["data.val_fraction=0"]),
        ({"source": "digits", "scale": -1.0}, ["data.scale=-1.0"]),
        ({"source": "digits", "standardize": "yes"}, ["data.standardize='yes'"]),
    ],
)
def test_config_errors(overrides: dict[str, object], needles: list[str]) -> None:
    with pytest.raises(UserError) as error:
        load_dataset(data_cfg(**overrides), seed=0)
    assert_one_sentence(error, *needles)


def test_negative_seed_is_rejected() -> None:
    with pytest.raises(UserError) as error:
        load_dataset(data_cfg(source="digits"), seed=-1)
    assert_one_sentence(error, "seed=-1")


# --- eval_batches ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 32, 144, 1000])
def test_eval_batches_cover_every_example_once(digits: DataBundle, batch_size: int) -> None:
    split = digits.val  # 144 examples
    batches = list(eval_batches(split, batch_size))
    assert len(batches) == -(-len(split) // batch_size)
    for batch in batches:
        assert batch["inputs"].shape == (batch_size, 64)
        assert batch["targets"].shape == batch["mask"].shape == (batch_size,)
        assert batch["mask"].dtype == np.float32
    mask = np.concatenate([b["mask"] for b in batches]).astype(bool)
    assert mask.sum() == len(split) and mask[: len(split)].all()  # padding only at the end
    inputs = np.concatenate([b["inputs"] for b in batches])
    targets = np.concatenate([b["targets"] for b in batches])
    assert np.array_equal(inputs[mask], split.inputs)
    assert np.array_equal(targets[mask], split.targets)
    assert not inputs[~mask].any() and not targets[~mask].any()


def test_eval_batches_rejects_nonpositive_batch_size(digits: DataBundle) -> None:
    with pytest.raises(UserError) as error:
        next(eval_batches(digits.val, 0))
    assert_one_sentence(error, "batch_size=0")


# --- train_iterator --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def id_split() -> Split:
    """100 examples whose single feature is their id; 100 // 16 = 6 batches per epoch."""
    return Split(np.arange(100, dtype=np.float32)[:, None], np.arange(100, dtype=np.int32) % 4)


def take(iterator: grain.DatasetIterator, count: int) -> list[dict[str, np.ndarray]]:
    return [next(iterator) for _ in range(count)]


def batch_ids(batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([b["inputs"][:, 0] for b in batches]).astype(np.int64)


def test_train_epoch_sees_distinct_examples_and_reshuffles(id_split: Split) -> None:
    iterator = train_iterator(id_split, 16, seed=0)
    first, second = take(iterator, 6), take(iterator, 6)
    for batch in first:
        assert batch["inputs"].shape == (16, 1) and batch["inputs"].dtype == np.float32
        assert batch["targets"].shape == (16,) and batch["targets"].dtype == np.int32
        assert np.array_equal(batch["targets"], batch["inputs"][:, 0].astype(np.int32) % 4)
    for epoch in (first, second):
        seen = batch_ids(epoch)
        assert len(np.unique(seen)) == 96  # 6 * 16 distinct; 4 dropped as the remainder
    assert not np.array_equal(batch_ids(first), batch_ids(second))


def test_train_iterator_determinism_and_seed_sensitivity(id_split: Split) -> None:
    a = batch_ids(take(train_iterator(id_split, 16, seed=7), 15))
    b = batch_ids(take(train_iterator(id_split, 16, seed=7), 15))
    c = batch_ids(take(train_iterator(id_split, 16, seed=8), 15))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("k", [0, 4, 6, 9])  # start, mid-epoch, on and past an epoch boundary
def test_train_iterator_state_restore_continues_exactly(id_split: Split, k: int) -> None:
    iterator = train_iterator(id_split, 16, seed=3)
    take(iterator, k)
    state = iterator.get_state()
    expected = batch_ids(take(iterator, 8))

    fresh = train_iterator(id_split, 16, seed=3)
    fresh.set_state(json.loads(json.dumps(state)))  # as it would come back from disk
    assert np.array_equal(batch_ids(take(fresh, 8)), expected)


def test_train_iterator_grain_checkpoint_round_trip(id_split: Split, tmp_path: Path) -> None:
    from etils import epath

    iterator = train_iterator(id_split, 16, seed=4)
    take(iterator, 5)
    handler = grain.checkpoint.CheckpointHandler()
    handler.save(epath.Path(tmp_path), args=grain.checkpoint.CheckpointSave(iterator))
    expected = batch_ids(take(iterator, 4))

    restored = handler.restore(
        epath.Path(tmp_path),
        args=grain.checkpoint.CheckpointRestore(train_iterator(id_split, 16, seed=4)),
    )
    assert np.array_equal(batch_ids(take(restored, 4)), expected)


def test_process_shards_reassemble_the_global_batch(id_split: Split) -> None:
    whole = take(train_iterator(id_split, 16, seed=2), 8)
    shards = [
        take(train_iterator(id_split, 16, seed=2, process_index=p, process_count=4), 8)
        for p in range(4)
    ]
    for i, batch in enumerate(whole):
        assert all(shard[i]["inputs"].shape == (4, 1) for shard in shards)
        joined = np.concatenate([shard[i]["inputs"] for shard in shards])
        assert np.array_equal(joined, batch["inputs"])


@pytest.mark.parametrize(
    ("batch_size", "needles"),
    [(0, ["trainer.batch_size=0"]), (101, ["trainer.batch_size=101", "100 examples"])],
)
def test_train_iterator_rejects_bad_batch_size(
    id_split: Split, batch_size: int, needles: list[str]
) -> None:
    with pytest.raises(UserError) as error:
        train_iterator(id_split, batch_size, seed=0)
    assert_one_sentence(error, *needles)


def test_train_iterator_throughput_sanity(digits: DataBundle) -> None:
    """Whole-batch gathers should stream thousands of batches quickly; reported, not asserted."""
    iterator = train_iterator(digits.train, 128, seed=0)
    per_epoch = len(digits.train) // 128
    epochs = 50
    start = time.perf_counter()
    batches = take(iterator, epochs * per_epoch)
    elapsed = time.perf_counter() - start
    print(f"train_iterator: {len(batches) / elapsed:,.0f} batches/s of 128 (digits, in-process)")

    assert iterator.get_state() == {"next_index": epochs * per_epoch}
    # Batches are fresh gathers, not views a later step could see change under it.
    assert not any(np.shares_memory(b["inputs"], digits.train.inputs) for b in batches[:10])
    per_class = np.bincount(np.concatenate([b["targets"] for b in batches]), minlength=10)
    # 50 epochs of near-complete passes: each class appears ~50 times its train count.
    train_counts = np.bincount(digits.train.targets, minlength=10)
    assert np.all(np.abs(per_class - epochs * train_counts) <= epochs * 13)


def test_options_take_every_key_and_default_from_the_schema() -> None:
    """A config missing keys (a run's config.yaml from before they existed) reads the schema's
    defaults; enum members read as their values."""
    assert set(read_config(SimpleNamespace())) == set(DataConfig.__dataclass_fields__)
    assert read_config(DataConfig(task=DataTask.regression))["task"] == "regression"
    defaults = DataConfig()
    options = DataOptions.from_config(SimpleNamespace(source="digits"))
    assert (options.test_fraction, options.val_fraction, options.scale) == (
        defaults.test_fraction,
        defaults.val_fraction,
        defaults.scale,
    )
    table = TableOptions.from_config(SimpleNamespace(target="y"))
    assert (table.task, table.max_categories, table.streaming) == ("auto", 256, False)
    assert TextOptions.from_config(SimpleNamespace()).seq_len == defaults.seq_len


def test_one_error_for_an_empty_split() -> None:
    options = DataOptions.from_config(SimpleNamespace(source="digits"))
    require_every_split({"train": 1, "val": 1, "test": 1}, "unused", "a row", options)
    with pytest.raises(UserError) as error:
        require_every_split(
            {"train": 5, "val": 0, "test": 1}, "X has too few rows for", "a row", options
        )
    assert str(error.value) == (
        "X has too few rows for data.test_fraction=0.2 and data.val_fraction=0.1 "
        "(train 5, val 0, test 1); every split needs a row."
    )
    with pytest.raises(UserError, match=r"^Column marks no row as 'test' \(train 2"):
        require_every_split(
            {"train": 2, "val": 1, "test": 0},
            lambda empty: f"Column marks no row as {empty!r}",
            "a row",
        )
