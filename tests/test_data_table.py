"""Tests for the table (CSV/Parquet) and text sources: reading, column kinds, train-only
preprocessing, splits, task inference, errors, fingerprints and Parquet streaming.

Real files written to tmp_path with pyarrow; no mocks.
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from jaxfw.data import (
    StreamingSplit,
    TablePreprocessor,
    check_findings,
    data_report,
    eval_batches,
    load_dataset,
    train_iterator,
)
from jaxfw.data.encoding import BadByte, excerpt, first_invalid_utf8
from jaxfw.errors import UserError


def cfg(path: Path | str | None, **overrides: object) -> SimpleNamespace:
    values: dict[str, object] = {
        "source": "table",
        "path": None if path is None else str(path),
        "target": "label",
        "test_fraction": 0.2,
        "val_fraction": 0.1,
        "standardize": False,
        "scale": 1.0,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def mixed_table(n: int = 300, seed: int = 0) -> pa.Table:
    """Numeric, integer, string, boolean and dictionary columns and a 3-class string label."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "x": rng.normal(5.0, 2.0, n),
            "count": rng.integers(0, 100, n),
            "color": rng.choice(["red", "green", "blue"], n),
            "flag": rng.random(n) > 0.5,
            "size": pa.array(rng.choice(["S", "M", "L"], n)).dictionary_encode(),
            "label": rng.choice(["cat", "dog", "eel"], n),
        }
    )


def write(table: pa.Table, path: Path, **options: object) -> Path:
    if path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path, **options)
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- reading and column kinds --------------------------------------------------------------


def test_csv_and_parquet_give_the_same_features_and_splits(tmp_path: Path) -> None:
    table = mixed_table().drop_columns(["size"])  # CSV has no dictionary type
    from_csv = load_dataset(cfg(write(table, tmp_path / "t.csv")), seed=3)
    from_parquet = load_dataset(cfg(write(table, tmp_path / "t.parquet")), seed=3)
    for role in ("train", "val", "test"):
        np.testing.assert_allclose(
            getattr(from_csv, role).inputs, getattr(from_parquet, role).inputs, rtol=1e-6
        )
        np.testing.assert_array_equal(
            getattr(from_csv, role).targets, getattr(from_parquet, role).targets
        )
    assert from_csv.fingerprint != from_parquet.fingerprint  # different source bytes


def test_feature_kinds_names_and_shapes(tmp_path: Path) -> None:
    bundle = load_dataset(cfg(write(mixed_table(), tmp_path / "t.parquet")), seed=0)
    prep = bundle.preprocessor
    assert prep.feature_names == [
        "x",
        "count",
        "color=blue",
        "color=green",
        "color=red",
        "flag=false",
        "flag=true",
        "size=L",
        "size=M",
        "size=S",
    ]
    assert bundle.input_shape == (10,)
    assert bundle.train.inputs.dtype == np.float32
    assert bundle.task_kind == "classification"
    assert prep.classes == ("cat", "dog", "eel")
    assert bundle.num_classes == 3 and bundle.train.targets.dtype == np.int32
    # One-hot blocks: exactly one 1 per categorical column per row (all values seen in train).
    for split in (bundle.train, bundle.test):
        assert set(np.unique(split.inputs[:, 2:])) <= {0.0, 1.0}
        for block in (slice(2, 5), slice(5, 7), slice(7, 10)):
            assert np.all(split.inputs[:, block].sum(axis=1) == 1)


def test_features_and_forced_categorical(tmp_path: Path) -> None:
    path = write(mixed_table(), tmp_path / "t.parquet")
    bundle = load_dataset(cfg(path, features=["count", "x"], categorical=["count"]), seed=0)
    names = bundle.preprocessor.feature_names
    assert bundle.preprocessor.input_columns == ["count", "x"]
    assert names[-1] == "x" and all(n.startswith("count=") for n in names[:-1])
    categories = [n.removeprefix("count=") for n in names[:-1]]
    assert categories == sorted(categories)  # compared and sorted as text
    assert set(categories) <= {str(v) for v in mixed_table().column("count").to_pylist()}
    assert len(categories) > 50


def test_numeric_statistics_and_vocabulary_come_from_train_only(tmp_path: Path) -> None:
    # Train x in 0..9, test x = 1000; 'purple' occurs only in test.
    n_train, n_val, n_test = 40, 10, 10
    x = [float(i % 10) for i in range(n_train)] + [5.0] * n_val + [1000.0] * n_test
    color = ["red", "green"] * (n_train // 2) + ["red"] * n_val + ["purple"] * n_test
    label = ["a", "b"] * ((n_train + n_val + n_test) // 2)
    fold = ["train"] * n_train + ["val"] * n_val + ["test"] * n_test
    table = pa.table({"x": x, "color": color, "fold": fold, "label": label})
    bundle = load_dataset(cfg(write(table, tmp_path / "t.csv"), split_column="fold"), seed=0)

    prep = bundle.preprocessor.to_dict()
    x_spec, color_spec = prep["columns"]
    train_x = np.array(x[:n_train])
    assert x_spec["mean"] == pytest.approx(train_x.mean())
    assert x_spec["std"] == pytest.approx(train_x.std())
    assert color_spec["categories"] == ["green", "red"]  # no 'purple'
    # Unseen category -> all zeros; the z-score uses train statistics.
    assert np.all(bundle.test.inputs[:, 1:] == 0.0)
    assert bundle.test.inputs[0, 0] == pytest.approx((1000 - train_x.mean()) / train_x.std())
    assert np.allclose(bundle.train.inputs[:, 0].mean(), 0.0, atol=1e-6)


def test_missing_numbers_are_imputed_with_the_train_mean(tmp_path: Path) -> None:
    csv = "x,label\n" + "".join(
        f"{v},{c}\n" for v, c in zip([1, 3, "", 5, 7, "NA"] * 10, "ab" * 30, strict=True)
    )
    path = write_text(tmp_path / "m.csv", csv)
    split = ["train"] * 36 + ["val"] * 12 + ["test"] * 12  # train: 6 cycles, mean 4
    table = pcsv.read_csv(path).append_column("fold", pa.array(split))
    pcsv.write_csv(table, path)
    bundle = load_dataset(cfg(path, split_column="fold", missing_indicators=True), seed=0)
    spec = bundle.preprocessor.columns[0]
    assert spec.mean == pytest.approx(4.0) and spec.missing_indicator
    assert bundle.preprocessor.feature_names == ["x", "x__missing"]
    missing_rows = np.flatnonzero(bundle.train.inputs[:, 1] == 1.0)
    assert len(missing_rows) == 12 and np.all(bundle.train.inputs[missing_rows, 0] == 0.0)
    without = load_dataset(cfg(path, split_column="fold"), seed=0)
    assert without.input_shape == (1,)


# --- splits --------------------------------------------------------------------------------


def test_split_by_column_keeps_rows_in_file_order(tmp_path: Path) -> None:
    n = 50
    table = pa.table(
        {
            "row": np.arange(n, dtype=np.float64),
            "fold": (["train", "val", "test", "train", "train"] * 10),
            "label": ["a", "b"] * 25,
        }
    )
    bundle = load_dataset(cfg(write(table, tmp_path / "s.parquet"), split_column="fold"), seed=0)
    prep = bundle.preprocessor.columns[0]
    rows = {
        role: np.rint(getattr(bundle, role).inputs[:, 0] * prep.std + prep.mean).astype(int)
        for role in ("train", "val", "test")
    }
    assert rows["val"].tolist() == list(range(1, n, 5))
    assert rows["test"].tolist() == list(range(2, n, 5))
    assert len(rows["train"]) == 30 and bundle.preprocessor.input_columns == ["row"]


def test_seeded_split_is_stratified_and_reproducible(tmp_path: Path) -> None:
    path = write(mixed_table(n=400), tmp_path / "t.parquet")
    a, b = load_dataset(cfg(path), seed=5), load_dataset(cfg(path), seed=5)
    np.testing.assert_array_equal(a.train.inputs, b.train.inputs)
    assert a.fingerprint == b.fingerprint
    c = load_dataset(cfg(path), seed=6)
    assert c.fingerprint != a.fingerprint
    assert not np.array_equal(a.test.targets, c.test.targets)
    assert len(a.test) == 80 and len(a.val) == 32 and len(a.train) == 288
    total = np.bincount(np.concatenate([a.train.targets, a.val.targets, a.test.targets]))
    test_share = np.bincount(a.test.targets, minlength=3) / total
    assert np.allclose(test_share, 0.2, atol=0.01)


# --- task inference --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "task", "kind", "classes"),
    [
        (["no", "yes"] * 30, "auto", "classification", ("no", "yes")),
        ([True, False] * 30, "auto", "classification", ("false", "true")),
        ([10, 2, 3] * 20, "auto", "classification", (2, 3, 10)),  # sorted as numbers
        (list(range(60)), "auto", "regression", ()),
        ([0.5, 1.5, 2.5] * 20, "auto", "regression", ()),
        ([0.0, 1.0] * 30, "classification", "classification", (0.0, 1.0)),
        (["1.5", "2.5", "3"] * 20, "regression", "regression", ()),
    ],
)
def test_task_kind_is_inferred_or_forced(
    tmp_path: Path, values: list, task: str, kind: str, classes: tuple
) -> None:
    x = np.arange(len(values), dtype=np.float64)
    path = write(pa.table({"x": x, "label": values}), tmp_path / "t.parquet")
    bundle = load_dataset(cfg(path, task=task), seed=0)
    assert bundle.task_kind == kind
    assert bundle.preprocessor.classes == classes
    if kind == "regression":
        assert bundle.num_classes == 0
        assert bundle.train.targets.dtype == np.float32
        assert "class_counts" not in bundle.summary()
        raw = np.asarray(values, dtype=np.float64)
        assert set(bundle.train.targets.tolist()) <= set(raw.astype(np.float32).tolist())
        assert bundle.preprocessor.target_mean is not None
    else:
        assert bundle.num_classes == len(classes)
        assert set(np.unique(bundle.train.targets)) == set(range(len(classes)))


def test_regression_target_statistics_are_from_train(tmp_path: Path) -> None:
    y = np.concatenate([np.full(30, 1.0), np.full(10, 50.0), np.full(10, 100.0)])
    y += np.linspace(0, 0.1, 50)
    fold = ["train"] * 30 + ["val"] * 10 + ["test"] * 10
    table = pa.table({"x": np.arange(50.0), "y": y, "fold": fold})
    bundle = load_dataset(
        cfg(write(table, tmp_path / "r.parquet"), target="y", split_column="fold"), 0
    )
    assert bundle.task_kind == "regression"
    assert bundle.preprocessor.target_mean == pytest.approx(y[:30].mean())
    assert bundle.preprocessor.target_std == pytest.approx(y[:30].std())
    np.testing.assert_allclose(bundle.test.targets, y[40:], rtol=1e-6)
    batch = next(eval_batches(bundle.val, 16))
    assert batch["targets"].dtype == np.float32 and batch["mask"].sum() == 10


# --- the preprocessor as a saved artifact ----------------------------------------------------


def test_preprocessor_json_round_trip_gives_identical_transforms(tmp_path: Path) -> None:
    table = mixed_table()
    bundle = load_dataset(
        cfg(write(table, tmp_path / "t.parquet"), missing_indicators=True), seed=0
    )
    text = bundle.preprocessor.to_json()
    json.loads(text)  # plain JSON
    restored = TablePreprocessor.from_json(text)
    assert restored.to_dict() == bundle.preprocessor.to_dict()
    np.testing.assert_array_equal(restored.transform(table), bundle.preprocessor.transform(table))
    # Inference input as plain columns (and a single example), with an unseen category.
    example = {"x": 5.0, "count": 3, "color": "mauve", "flag": True, "size": "M"}
    encoded = restored.transform(example)
    assert encoded.shape == (1, bundle.input_shape[0])
    names = restored.feature_names
    assert encoded[0, names.index("flag=true")] == 1.0
    assert encoded[0, names.index("size=M")] == 1.0
    assert encoded[0, [names.index(f"color={c}") for c in ("blue", "green", "red")]].sum() == 0
    with pytest.raises(UserError, match=r"no column 'size'"):
        restored.transform({"x": [1.0], "count": [1], "color": ["red"], "flag": [True]})
    with pytest.raises(UserError, match=r"format"):
        TablePreprocessor.from_dict({"format": "something else"})


def test_rows_of_the_file_transform_to_the_split_rows(tmp_path: Path) -> None:
    table = mixed_table(n=120)
    fold = pa.array((["train"] * 8 + ["val"] + ["test"]) * 12)
    path = write(table.append_column("fold", fold), tmp_path / "t.parquet")
    bundle = load_dataset(cfg(path, split_column="fold"), seed=0)
    test_rows = table.filter(pa.compute.equal(fold, "test"))
    np.testing.assert_array_equal(bundle.preprocessor.transform(test_rows), bundle.test.inputs)
    np.testing.assert_array_equal(
        bundle.preprocessor.encode_targets(test_rows.column("label")), bundle.test.targets
    )


# --- errors -------------------------------------------------------------------------------


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message


def test_error_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"does not exist") as error:
        load_dataset(cfg(tmp_path / "nope.csv"), seed=0)
    assert "nope.csv" in str(error.value) and one_sentence(str(error.value))


def test_error_unknown_extension_and_unset_path(tmp_path: Path) -> None:
    path = write_text(tmp_path / "t.xlsx", "x")
    with pytest.raises(UserError, match=r"unsupported extension '\.xlsx'.*\.csv, \.parquet"):
        load_dataset(cfg(path), seed=0)
    with pytest.raises(UserError, match=r"data.path is not set"):
        load_dataset(cfg(None), seed=0)
    with pytest.raises(UserError, match=r"data.target is not set"):
        load_dataset(cfg(path, target=None), seed=0)


def test_error_unreadable_files(tmp_path: Path) -> None:
    fake = write_text(tmp_path / "t.parquet", "a,b\n1,2\n")
    with pytest.raises(UserError, match=r"not a readable PARQUET file") as error:
        load_dataset(cfg(fake), seed=0)
    assert one_sentence(str(error.value))
    empty = write_text(tmp_path / "e.csv", "")
    with pytest.raises(UserError, match=r"not a readable CSV file \(Empty CSV file\)") as error:
        load_dataset(cfg(empty), seed=0)
    assert one_sentence(str(error.value))


def test_error_all_missing_target_says_it_has_no_values(tmp_path: Path) -> None:
    # A CSV column with no values at all has pyarrow type null (once said "has type null").
    path = write_text(tmp_path / "t.csv", "x,label\n" + "".join(f"{i},\n" for i in range(12)))
    expected = (
        f"Target column 'label' of data file '{path}' has no values (all 12 rows missing); "
        "fill it in, or choose a column that holds the labels or numbers to predict with "
        "data.target=<column>."
    )
    for task in ("auto", "regression"):
        with pytest.raises(UserError) as error:
            load_dataset(cfg(path, task=task), seed=0)
        assert str(error.value) == expected
    # Parquet: a string column of nulls, in memory and streamed.
    table = pa.table({"x": np.arange(40.0), "label": pa.array([None] * 40, pa.string())})
    path = write(table, tmp_path / "t.parquet", row_group_size=16)
    for streaming in (False, True):
        with pytest.raises(UserError, match=r"has no values \(all 40 rows missing\)"):
            load_dataset(cfg(path, streaming=streaming), seed=0)


def latin1_csv(path: Path, header: str = "x,city,label") -> Path:
    rows = "".join(f"{i},{'Zürich' if i % 3 else 'Köln'},{'ab'[i % 2]}\n" for i in range(30))
    path.write_bytes(f"{header}\n{rows}".encode("latin-1"))
    return path


def test_error_latin1_csv_names_the_first_bad_byte_and_how_to_convert(tmp_path: Path) -> None:
    path = latin1_csv(tmp_path / "cities.csv")
    expected = (
        f"Data file '{path}' is not UTF-8 text (line 2, byte offset 16, holds the byte 0xf6); "
        f"convert it, e.g. from Latin-1 with: iconv -f latin1 -t utf-8 {path} > "
        f"{tmp_path / 'cities.utf8.csv'}."
    )
    # Once "Column 'city' ... has type binary"; the same whether the column is inferred, forced
    # categorical (pyarrow then fails to convert it) or the target.
    for options in ({}, {"categorical": ["city"]}, {"target": "city"}):
        with pytest.raises(UserError) as error:
            load_dataset(cfg(path, **options), seed=0)
        assert str(error.value) == expected, options
    header = latin1_csv(tmp_path / "header.csv", header="x,größe,label")
    with pytest.raises(UserError, match=r"not UTF-8 text \(line 1, byte offset 4, holds the"):
        load_dataset(cfg(header), seed=0)
    # Offsets count the decompressed text of a .csv.gz.
    packed = tmp_path / "cities.csv.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(UserError, match=r"line 2, byte offset 16, .*decompress it and convert"):
        load_dataset(cfg(packed), seed=0)
    # Converted, it loads.
    path.write_text(path.read_bytes().decode("latin-1"))
    assert load_dataset(cfg(path), seed=0).input_shape[0] == 3  # x + two cities


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
            "which is not text",
        ),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "a PNG image"),
        (gzip.compress(b"x,label\n1,a\n2,b\n" * 50), "gzip-compressed data (name it .csv.gz)"),
    ],
    ids=["random", "png", "gzip"],
)
def test_error_binary_file_named_csv_shows_a_short_printable_excerpt(
    tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        load_dataset(cfg(path), seed=0)
    message = str(error.value)
    assert message.startswith(f"Data file '{path}' does not look like a CSV file: it starts with '")
    assert message.endswith(
        f"...', {says}; data.path must name comma-separated text (.csv) or a Parquet file "
        "(.parquet, .pq)."
    )
    shown = message.split("it starts with '", 1)[1].split("...'", 1)[0]
    assert 0 < len(shown) <= 60 and shown.isprintable() and shown.isascii()
    assert one_sentence(message)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_first_invalid_utf8_is_found_across_chunk_boundaries(size: int) -> None:
    data = "é\n".encode() * 10 + b"\xffok"
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert first_invalid_utf8(chunks) == BadByte(offset=30, line=11, value=0xFF)
    assert first_invalid_utf8([data[:30]]) is None
    assert first_invalid_utf8([data[:28]]) == BadByte(offset=27, line=10, value=0xC3)  # cut


def test_excerpt_escapes_and_caps() -> None:
    assert excerpt(b"ab\x00\xff\n") == "ab\\x00\\xff\\n"
    assert excerpt("tab\there é") == "tab\\there é"
    cut = excerpt(b"\x01" * 100)
    assert cut == "\\x01" * 15 + "..."  # whole escapes only, at most 60 characters


def test_error_ragged_csv_names_the_line(tmp_path: Path) -> None:
    rows = "".join(f"{i},{'ab'[i % 2]}\n" for i in range(20))
    # A blank line: pyarrow counts records, not lines; the message gives the file's line.
    path = write_text(tmp_path / "r.csv", f"x,label\n{rows}\n5,a,3\n{rows}")
    with pytest.raises(UserError) as error:
        load_dataset(cfg(path), seed=0)
    assert str(error.value) == (
        f"Data file '{path}' has 3 fields on line 23 ('5,a,3') but its header has 2 columns; "
        "every line needs one value per column (quote values that contain a comma)."
    )
    short = write_text(tmp_path / "s.csv", "x,y,label\n1,2,a\n3,b\n")
    with pytest.raises(UserError, match=r"has 2 fields on line 3 \('3,b'\) but its header has 3"):
        load_dataset(cfg(short), seed=0)
    long_row = write_text(tmp_path / "l.csv", "x,label\n1,a\n" + "9," * 200 + "b\n")
    with pytest.raises(UserError) as error:
        load_dataset(cfg(long_row), seed=0)
    shown = str(error.value).split("on line 3 ('", 1)[1].split("')", 1)[0]
    assert shown == "9," * 30 + "..."  # the row, cut to a short excerpt


def test_error_unknown_columns_list_the_columns(tmp_path: Path) -> None:
    path = write(mixed_table(), tmp_path / "t.csv")
    with pytest.raises(UserError) as error:
        load_dataset(cfg(path, target="lable"), seed=0)
    message = str(error.value)
    assert "data.target='lable'" in message and "'label'" in message and "'color'" in message
    with pytest.raises(UserError, match=r"data.features='colour'"):
        load_dataset(cfg(path, features=["x", "colour"]), seed=0)
    with pytest.raises(UserError, match=r"data.split_column='fold'"):
        load_dataset(cfg(path, split_column="fold"), seed=0)
    with pytest.raises(UserError, match=r"both data.categorical and data.numeric"):
        load_dataset(cfg(path, categorical=["x"], numeric=["x"]), seed=0)


def test_error_target_with_one_class(tmp_path: Path) -> None:
    path = write(pa.table({"x": [1.0, 2.0, 3.0, 4.0], "label": ["spam"] * 4}), tmp_path / "t.csv")
    with pytest.raises(UserError, match=r"only the value 'spam'.*at least 2 classes"):
        load_dataset(cfg(path), seed=0)


def test_error_forced_numeric_names_column_and_row(tmp_path: Path) -> None:
    csv = "age,label\n31,a\n 42 ,b\nforty,a\n,b\n" + "50,a\n" * 10
    path = write_text(tmp_path / "n.csv", csv)
    with pytest.raises(UserError) as error:
        load_dataset(cfg(path, numeric=["age"]), seed=0)
    message = str(error.value)
    assert "'age'" in message and "row 3 (line 4 of the file)" in message and "'forty'" in message
    assert one_sentence(message)
    # In Parquet, a text column forced numeric: row counted over the whole file.
    ages = ["1"] * 30 + ["2.5", "x7"] + ["3"] * 8
    table = pa.table({"age": ages, "label": ["a", "b"] * 20})
    path = write(table, tmp_path / "n.parquet", row_group_size=16)
    with pytest.raises(UserError, match=r"'age'.* row 32 holds 'x7'"):
        load_dataset(cfg(path, numeric=["age"]), seed=0)
    with pytest.raises(UserError, match=r"'age'.* row 32 holds 'x7'"):
        load_dataset(cfg(path, numeric=["age"], streaming=True), seed=0)


def test_error_stray_string_in_a_numeric_column(tmp_path: Path) -> None:
    csv = "height,label\n" + "".join(f"{150 + i},{'ab'[i % 2]}\n" for i in range(20))
    csv = csv.replace("\n157,", "\n?,")  # pyarrow now infers the column as text
    path = write_text(tmp_path / "h.csv", csv)
    with pytest.raises(UserError) as error:
        load_dataset(cfg(path), seed=0)
    message = str(error.value)
    assert "'height'" in message and "row 8 (line 9 of the file)" in message and "'?'" in message
    # Declared categorical, it loads (as categories).
    assert load_dataset(cfg(path, categorical=["height"]), seed=0).input_shape[0] > 1


def test_error_empty_table_and_empty_split(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"holds no rows"):
        load_dataset(cfg(write_text(tmp_path / "e.csv", "x,label\n")), seed=0)
    empty = pa.table({"x": pa.array([], pa.float64()), "label": pa.array([], pa.string())})
    with pytest.raises(UserError, match=r"holds no rows"):
        load_dataset(cfg(write(empty, tmp_path / "e.parquet")), seed=0)
    table = pa.table(
        {
            "x": [1.0, 2.0, 3.0, 4.0],
            "fold": ["train", "train", "test", "test"],
            "label": ["a", "b"] * 2,
        }
    )
    with pytest.raises(UserError, match=r"marks no usable row as 'val'"):
        load_dataset(cfg(write(table, tmp_path / "f.parquet"), split_column="fold"), seed=0)


def test_error_bad_split_values_are_listed(tmp_path: Path) -> None:
    fold = ["train"] * 6 + ["validation", "dev", "test", "test"]
    table = pa.table({"x": np.arange(10.0), "fold": fold, "label": ["a", "b"] * 5})
    with pytest.raises(UserError) as error:
        load_dataset(cfg(write(table, tmp_path / "f.csv"), split_column="fold"), seed=0)
    message = str(error.value)
    assert "'dev', 'validation'" in message and "'train', 'val' or 'test'" in message


def test_error_bad_option_values(tmp_path: Path) -> None:
    path = write(mixed_table(), tmp_path / "t.parquet")
    with pytest.raises(UserError, match=r"data.task='ranking'"):
        load_dataset(cfg(path, task="ranking"), seed=0)
    with pytest.raises(UserError, match=r"data.streaming='yes'"):
        load_dataset(cfg(path, streaming="yes"), seed=0)
    csv = write(mixed_table().drop_columns(["size"]), tmp_path / "t.csv")
    with pytest.raises(UserError, match=r"data.streaming=true reads Parquet"):
        load_dataset(cfg(csv, streaming=True), seed=0)
    with pytest.raises(UserError, match=r"data.features lists 'label', which is the target"):
        load_dataset(cfg(path, features=["x", "label"]), seed=0)


# --- fingerprints ------------------------------------------------------------------------------


def flip_one_byte(path: Path, needle: bytes) -> None:
    """Change one byte inside `needle`'s first occurrence (a value's bytes, so the file stays
    valid)."""
    raw = bytearray(path.read_bytes())
    at = raw.index(needle)
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


def test_fingerprint_changes_with_one_byte_of_csv_and_parquet(tmp_path: Path) -> None:
    table = pa.table({"x": np.arange(40, dtype=np.float64) + 0.25, "label": ["a", "b"] * 20})
    for suffix in (".csv", ".parquet"):
        path = write(table, tmp_path / f"t{suffix}", compression="NONE", use_dictionary=False)
        before = load_dataset(cfg(path), seed=0)
        assert load_dataset(cfg(path), seed=0).fingerprint == before.fingerprint
        assert load_dataset(cfg(path, val_fraction=0.2), seed=0).fingerprint != before.fingerprint
        needle = b"17.25" if suffix == ".csv" else struct.pack("<d", 17.25)
        flip_one_byte(path, needle)
        after = load_dataset(cfg(path), seed=0)
        assert after.fingerprint != before.fingerprint, suffix


def test_fingerprint_changes_with_one_byte_of_text(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_text(folder / "a.txt", "hello world\n" * 40)
    write_text(folder / "b.txt", "lorem ipsum\n" * 40)
    config = text_cfg(folder, seq_len=8)
    before = load_dataset(config, seed=0).fingerprint
    assert load_dataset(config, seed=0).fingerprint == before
    write_text(folder / "b.txt", "lorem ipsun\n" + "lorem ipsum\n" * 39)  # one byte
    edited = load_dataset(config, seed=0).fingerprint
    assert edited != before
    (folder / "b.txt").rename(folder / "c.txt")  # same bytes, other name: paths are hashed
    assert load_dataset(config, seed=0).fingerprint not in {before, edited}


# --- text ----------------------------------------------------------------------------------------


def text_cfg(path: Path | None, **overrides: object) -> SimpleNamespace:
    values: dict[str, object] = {
        "source": "text",
        "path": None if path is None else str(path),
        "test_fraction": 0.1,
        "val_fraction": 0.1,
        "seq_len": 16,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def rebuild(windows: np.ndarray, targets: np.ndarray) -> bytes:
    """The contiguous bytes a split's windows cover."""
    return bytes(np.concatenate([windows.reshape(-1), targets[-1:, -1]]).astype(np.uint8))


def test_text_windows_and_position_split(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    write_text(folder / "b.txt", "".join(chr(97 + i % 26) for i in range(600)))
    write_text(folder / "sub" / "a.txt", "0123456789" * 40)
    write_text(folder / "ignored.md", "not matched by the default glob")
    write_text(folder / ".hidden.txt", "hidden files are skipped")
    bundle = load_dataset(text_cfg(folder), seed=0)
    assert bundle.task_kind == "lm" and bundle.num_classes == 256
    assert bundle.input_shape == (16,)
    corpus = (folder / "b.txt").read_bytes() + (folder / "sub" / "a.txt").read_bytes()
    assert len(corpus) == 1000
    # test = last 100 bytes, val = the 90 before them, train = the first 810.
    train, val, test = bundle.train, bundle.val, bundle.test
    for split in (train, val, test):
        assert split.inputs.dtype == np.int32 and split.targets.dtype == np.int32
        np.testing.assert_array_equal(split.inputs[:, 1:], split.targets[:, :-1])
        np.testing.assert_array_equal(split.inputs[1:, 0], split.targets[:-1, -1])
    assert (len(train), len(val), len(test)) == (809 // 16, 89 // 16, 99 // 16)
    assert corpus.startswith(rebuild(train.inputs, train.targets))
    assert corpus[810:].startswith(rebuild(val.inputs, val.targets))
    assert corpus[900:].startswith(rebuild(test.inputs, test.targets))
    # A glob picks other files; one file works as the path too.
    md = load_dataset(
        text_cfg(folder, glob="*.md", seq_len=4, test_fraction=0.2, val_fraction=0.2), 0
    )
    assert rebuild(md.train.inputs, md.train.targets).startswith(b"not matched")
    single = load_dataset(text_cfg(folder / "sub" / "a.txt"), seed=0)
    assert rebuild(single.train.inputs, single.train.targets).startswith(b"0123456789" * 3)
    batch = next(train_iterator(bundle.train, 8, seed=0))
    assert batch["inputs"].shape == (8, 16) and batch["targets"].shape == (8, 16)


def test_text_defaults_to_the_stdlib_source(tmp_path: Path) -> None:
    import sysconfig

    bundle = load_dataset(text_cfg(None, seq_len=32, max_bytes=20_000), seed=0)
    assert bundle.name == "stdlib"
    total = len(bundle.train) + len(bundle.val) + len(bundle.test)
    assert total == pytest.approx(20_000 / 32, abs=3)
    root = Path(sysconfig.get_paths()["stdlib"])
    top = sorted(p.name for p in root.glob("*.py"))[0]  # "__future__.py" sorts first
    head = (root / top).read_bytes()[:64]
    assert rebuild(bundle.train.inputs, bundle.train.targets)[: len(head)] == head
    again = load_dataset(text_cfg(None, seq_len=32, max_bytes=20_000), seed=0)
    assert again.fingerprint == bundle.fingerprint


def test_text_that_is_not_utf8_gets_a_warning_finding(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_text(folder / "a.txt", "plain ascii text\n" * 40)
    for name in ("b.txt", "c.txt"):
        (folder / name).write_bytes("Grüße aus Köln\n".encode("latin-1") * 40)
    bundle = load_dataset(text_cfg(folder), seed=0)
    (finding,) = data_report(bundle)["findings"]
    assert finding["severity"] == "warning" and finding["check"] == "not_utf8"
    b_txt = folder / "b.txt"
    assert finding["message"] == (
        f"Text file '{b_txt}' (and 1 other file) is not UTF-8 (line 1, byte offset 2, holds the "
        "byte 0xfc); the model learns its bytes as they are, but generated text is read as "
        f"UTF-8, so convert it in place, e.g. from Latin-1 with: iconv -f latin1 -t utf-8 {b_txt}"
        f" > converted.tmp && mv converted.tmp {b_txt}."
    )
    assert check_findings(data_report(bundle), "error") == [finding]  # a warning: it trains
    single = load_dataset(text_cfg(folder / "a.txt", seq_len=4), seed=0)
    assert data_report(single)["findings"] == []


def test_text_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"does not exist"):
        load_dataset(text_cfg(tmp_path / "missing"), seed=0)
    with pytest.raises(UserError, match=r"No files in directory .* match data.glob='\*\*/\*.txt'"):
        load_dataset(text_cfg(tmp_path), seed=0)
    write_text(tmp_path / "short.txt", "tiny")
    with pytest.raises(UserError, match=r"too short for data.seq_len=16"):
        load_dataset(text_cfg(tmp_path), seed=0)
    with pytest.raises(UserError, match=r"data.seq_len=0"):
        load_dataset(text_cfg(tmp_path, seq_len=0), seed=0)


# --- streaming ---------------------------------------------------------------------------------


def test_streaming_matches_the_in_memory_preprocessing(tmp_path: Path) -> None:
    n = 2000
    rng = np.random.default_rng(1)
    fold = rng.choice(["train", "val", "test"], n, p=[0.7, 0.15, 0.15])
    table = pa.table(
        {
            "x": rng.normal(3, 2, n),
            "color": rng.choice(["r", "g", "b"], n),
            "fold": fold,
            "label": rng.choice(["p", "q"], n),
        }
    )
    path = write(table, tmp_path / "s.parquet", row_group_size=128)  # 16 row groups
    memory = load_dataset(cfg(path, split_column="fold"), seed=0)
    stream = load_dataset(cfg(path, split_column="fold", streaming=True), seed=0)
    assert isinstance(stream.train, StreamingSplit)
    assert len(stream.train) == len(memory.train)
    a, b = memory.preprocessor.to_dict(), stream.preprocessor.to_dict()
    assert a["columns"][1] == b["columns"][1]  # the vocabulary
    assert a["columns"][0]["mean"] == pytest.approx(b["columns"][0]["mean"], rel=1e-12)
    assert a["columns"][0]["std"] == pytest.approx(b["columns"][0]["std"], rel=1e-12)
    np.testing.assert_allclose(stream.test.inputs, memory.test.inputs, rtol=1e-6)
    assert stream.summary()["class_counts"] == memory.summary()["class_counts"]

    # One epoch of the stream is a permutation of the train rows, and resumes exactly.
    batch, epoch = 100, len(memory.train)
    iterator = train_iterator(stream.train, batch, seed=4)
    rows = np.concatenate([next(iterator)["inputs"] for _ in range(-(-epoch // batch))])[:epoch]
    np.testing.assert_allclose(np.sort(rows[:, 0]), np.sort(memory.train.inputs[:, 0]), rtol=1e-6)
    state = json.loads(json.dumps(iterator.get_state()))
    expected = [next(iterator) for _ in range(3)]
    restored = train_iterator(stream.train, batch, seed=4)
    restored.set_state(state)
    for want in expected:
        got = next(restored)
        np.testing.assert_array_equal(got["inputs"], want["inputs"])
        np.testing.assert_array_equal(got["targets"], want["targets"])
    # Each process gets its slice of every global batch.
    half = next(train_iterator(stream.train, batch, seed=4, process_index=1, process_count=2))
    first = next(train_iterator(stream.train, batch, seed=4))
    np.testing.assert_array_equal(half["inputs"], first["inputs"][50:])


def test_streaming_split_by_seed_draws_rows(tmp_path: Path) -> None:
    path = write(mixed_table(n=3000), tmp_path / "t.parquet", row_group_size=256)
    bundle = load_dataset(cfg(path, streaming=True), seed=0)
    sizes = bundle.summary()["sizes"]
    assert sum(sizes.values()) == 3000
    assert sizes["test"] == pytest.approx(600, abs=70) and sizes["val"] == pytest.approx(
        240, abs=50
    )
    assert bundle.example_batch(4)["inputs"].shape == (4, bundle.input_shape[0])
    assert load_dataset(cfg(path, streaming=True), seed=0).fingerprint == bundle.fingerprint
    assert load_dataset(cfg(path), seed=0).fingerprint != bundle.fingerprint


MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys
    from types import SimpleNamespace
    from jaxfw.data import load_dataset, train_iterator

    # From /proc/self/status, not getrusage: ru_maxrss survives exec, so a child forked from
    # a big pytest process starts with the parent's peak.
    def status(field):  # bytes
        with open("/proc/self/status") as lines:
            for line in lines:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024

    def cfg(path):
        return SimpleNamespace(source="table", path=path, target="label", streaming=STREAMING,
                               test_fraction=0.01, val_fraction=0.01, validation=VALIDATION)

    def run(path, batches):
        bundle = load_dataset(cfg(path), seed=0)
        iterator = train_iterator(bundle.train, 1024, seed=0)
        for _ in range(batches):
            next(iterator)
        return bundle

    STREAMING = sys.argv[3] == "stream"  # or "memory", to compare
    VALIDATION = sys.argv[4] if len(sys.argv) > 4 else "warn"
    run(sys.argv[2], 40)  # warm up: lazy imports, allocator arenas, kernel registries
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak (VmHWM) to the current resident size
    base = status("VmRSS")
    bundle = run(sys.argv[1], 0)
    loaded = status("VmHWM")
    iterator = train_iterator(bundle.train, 1024, seed=0)
    rows = 0
    while rows < 1.2 * len(bundle.train):  # more than one epoch
        rows += len(next(iterator)["targets"])
    print(json.dumps({"base": base, "load": loaded - base, "total": status("VmHWM") - base,
                      "rows": rows, "train": len(bundle.train)}))
    """
)


def write_wide_parquet(path: Path, rows: int, columns: int = 16, group: int = 16_384) -> int:
    """Random float32 features and a 3-class label, written group by group; returns the
    size of the decompressed table in bytes."""
    schema = pa.schema([(f"f{i}", pa.float32()) for i in range(columns)] + [("label", pa.int32())])
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, group):
            x = rng.normal(size=(min(group, rows - start), columns)).astype(np.float32)
            label = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1)
            data = {f"f{i}": x[:, i] for i in range(columns)} | {"label": label}
            writer.write_table(pa.table(data, schema=schema), row_group_size=group)
    return rows * (columns + 1) * 4


@pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="measures memory through Linux /proc"
)
def test_streaming_never_holds_the_whole_table(tmp_path: Path) -> None:
    big, small = tmp_path / "big.parquet", tmp_path / "small.parquet"
    table_bytes = write_wide_parquet(big, rows=1_000_000)  # 68 MB decompressed, 62 groups
    write_wide_parquet(small, rows=40_000)
    assert pq.ParquetFile(big).num_row_groups == 62
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(big), str(small), "stream"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    measured = json.loads(probe.stdout.strip().splitlines()[-1])
    print("streaming memory:", measured, "table bytes:", table_bytes)
    assert measured["rows"] > measured["train"]  # a full epoch and more went through
    # Loading the table in memory would add well over its own size (raw + encoded copy);
    # streaming adds row groups, val/test rows and one 8-byte hash per train row.
    # Measured 31-41 MB for this 68 MB table (the peak RSS moves with the allocator's
    # fragmentation: 0.6x once failed at 40.9 MB inside the full suite); the bound keeps a
    # margin and still excludes holding the table, which alone is 1x.
    assert measured["total"] < 0.9 * table_bytes, measured
