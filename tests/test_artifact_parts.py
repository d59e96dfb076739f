"""The artifact's host-side parts: the numpy table encoding equals training's pyarrow one on
awkward raw values, weights keep bfloat16, rows come in several forms, bins are stable."""

import math

import ml_dtypes
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxfw.artifact import ArtifactError
from jaxfw.artifact.preprocessing import TableColumns
from jaxfw.artifact.rows import as_columns
from jaxfw.artifact.weights import load_weights, save_weights
from jaxfw.data.sources.tables.preprocessor import (
    CategoricalColumn,
    NumericColumn,
    TablePreprocessor,
)
from jaxfw.distributions import bin_counts, categorical_summary, numeric_summary

PREPROCESSOR = TablePreprocessor(
    columns=(
        NumericColumn("size", mean=1.5, std=2.0, missing_indicator=True),
        CategoricalColumn("color", ("blue", "red")),
        CategoricalColumn("store", ("11", "3", "7")),
        NumericColumn("weight", mean=-0.25, std=0.5),
    ),
    target="label",
    task_kind="classification",
    classes=("no", "yes"),
)

numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-1000, 1000),
)
texts = st.sampled_from(["blue", "red", "green", "", "Blue"]) | st.none()
stores = st.sampled_from([3, 7, 11, 12]) | st.none()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(numbers, texts, stores, numbers), min_size=1, max_size=12),
    st.booleans(),
)
def test_numpy_encoding_equals_training_encoding(rows, numbers_as_text):
    size, color, store, weight = (list(column) for column in zip(*rows, strict=True))
    if numbers_as_text:  # as a CSV or a JSON request holds them
        size = ["" if v is None else repr(float(v)) for v in size]
    table = pa.table(
        {
            "size": pa.array(size, pa.string() if numbers_as_text else pa.float64()),
            "color": pa.array(color, pa.string()),
            "store": pa.array(store, pa.int64()),
            "weight": pa.array(weight, pa.float64()),
        }
    )
    expected = PREPROCESSOR.transform(table)
    encoding = TableColumns(PREPROCESSOR.to_dict())
    records = [
        dict(zip(table.column_names, r, strict=True))
        for r in zip(size, color, store, weight, strict=True)
    ]
    np.testing.assert_array_equal(encoding.transform(records), expected)
    np.testing.assert_array_equal(encoding.transform(table), expected)


def test_rows_in_every_form_and_their_mistakes():
    records = [{"a": 1, "b": "x"}, {"a": 2}]
    assert as_columns(records) == ({"a": [1, 2], "b": ["x", None]}, 2)
    assert as_columns({"a": 3, "b": "y"}) == ({"a": [3], "b": ["y"]}, 1)
    assert as_columns(pa.table({"a": [1, 2]})) == ({"a": [1, 2]}, 2)
    with pytest.raises(ArtifactError, match=r"different lengths \(a: 2, b: 1\)"):
        as_columns({"a": [1, 2], "b": [1]})
    with pytest.raises(ArtifactError, match="Row 2 is a list"):
        as_columns([{"a": 1}, [1]])
    encoding = TableColumns(PREPROCESSOR.to_dict())
    with pytest.raises(ArtifactError, match="no column 'store'"):
        encoding.transform({"size": [1.0], "color": ["red"], "weight": [0.0]})
    with pytest.raises(ArtifactError, match="Column 'size' must be numeric but row 2 holds 'abc'"):
        encoding.transform(
            {"size": ["1", "abc"], "color": [None] * 2, "store": [3, 3], "weight": [0, 0]}
        )


def test_weights_keep_bfloat16_and_names(tmp_path):
    tree = {
        "params": {"Dense_0": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}},
        "batch_stats": {"mean": np.array([0.5, 1.5], dtype=ml_dtypes.bfloat16)},
    }
    save_weights(tree, tmp_path / "w.safetensors")
    loaded = load_weights(tmp_path / "w.safetensors")
    assert set(loaded) == {"params/Dense_0/kernel", "batch_stats/mean"}
    assert loaded["batch_stats/mean"].dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(
        loaded["params/Dense_0/kernel"], tree["params"]["Dense_0"]["kernel"]
    )
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ArtifactError, match=r"bad\.safetensors is not a readable safetensors file"):
        load_weights(tmp_path / "bad.safetensors")


def test_distribution_summaries():
    values = np.concatenate([np.arange(100, dtype=float), [np.nan, np.inf]])
    summary = numeric_summary(values)
    assert len(summary["edges"]) == 9 and summary["count"] == 102
    assert summary["missing_share"] == pytest.approx(2 / 102)
    assert sum(summary["shares"]) + summary["missing_share"] == pytest.approx(1.0)
    counts, missing = bin_counts(np.array([-5.0, 1e9, math.nan]), summary["edges"])
    assert counts[0] == 1 and counts[-1] == 1 and missing == 1
    few = numeric_summary(np.array([0.0, 0.0, 1.0, 1.0]))
    assert few["edges"] == [0.0, 1.0] and few["shares"] == [0.5, 0.5, 0.0]  # ties: fewer bins
    cats = categorical_summary({"a": 6, "b": 3, "c": 1}, missing=10, max_categories=2)
    assert cats["shares"] == {"a": 0.3, "b": 0.15} and cats["other_share"] == 0.05
    assert cats["missing_share"] == 0.5
