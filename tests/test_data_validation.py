"""Tests for the data report and `data.validation`: counts on a crafted table with
duplicates, leakage, constant, missing and infinite values, unseen categories and a missing
target; the same report from a raw table, from a streamed Parquet file and for array
bundles; and the error/warn/off modes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxfw.data import (
    check_findings,
    data_report,
    format_finding,
    load_dataset,
    validate_data,
    validation_mode,
)
from jaxfw.errors import UserError

INF = math.inf
# (fold, x, const, color, label): see the expected counts in test_report_counts.
ROWS = [
    ("train", 1.0, 7.0, "red", "a"),
    ("train", 1.0, 7.0, "red", "a"),  # duplicate of the row above
    ("train", 2.0, 7.0, "red", "b"),
    ("train", 3.0, 7.0, "green", "a"),
    ("train", None, 7.0, "green", "b"),  # missing x
    ("train", INF, 7.0, "red", "a"),  # infinite x
    ("train", 6.0, 7.0, "green", None),  # missing target: left out
    ("train", 7.0, 7.0, "red", "b"),
    ("train", 8.0, 7.0, "green", "a"),
    ("train", 9.0, 7.0, "red", "b"),
    ("val", 2.0, 7.0, "red", "b"),  # identical to a train row
    ("val", 10.0, 7.0, "green", "a"),
    ("val", 11.0, 7.0, "red", "b"),
    ("test", 3.0, 7.0, "green", "a"),  # identical to a train row
    ("test", 8.0, 7.0, "green", "a"),  # identical to a train row
    ("test", None, 7.0, "purple", "b"),  # missing x, category unseen in train
    ("test", 12.0, 7.0, "red", "a"),
]


def crafted_table() -> pa.Table:
    names = ("fold", "x", "const", "color", "label")
    return pa.table({name: [row[i] for row in ROWS] for i, name in enumerate(names)})


def cfg(path: Path, **overrides: object) -> SimpleNamespace:
    values: dict[str, object] = {
        "source": "table",
        "path": str(path),
        "target": "label",
        "split_column": "fold",
        "validation": "warn",
        "test_fraction": 0.2,
        "val_fraction": 0.1,
    }
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.fixture
def crafted(tmp_path: Path) -> Path:
    path = tmp_path / "crafted.parquet"
    pq.write_table(crafted_table(), path, row_group_size=5)
    return path


def by_check(report: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for finding in report["findings"]:
        out.setdefault(finding["check"], []).append(finding)
    return out


def test_report_counts(crafted: Path) -> None:
    bundle = load_dataset(cfg(crafted), seed=0)
    report = data_report(bundle)
    json.dumps(report)  # JSON-ready
    assert report["rows"] == {"train": 9, "val": 3, "test": 4}
    assert report["missing_targets"] == 1
    assert report["duplicates"] == {"train": 1}
    assert report["leakage"] == {"val": 1, "test": 2}
    x, const, color = (report["columns"][n] for n in ("x", "const", "color"))
    assert x["missing"] == {"train": 1, "val": 0, "test": 1}
    assert x["infinite"] == {"train": 1, "val": 0, "test": 0}
    assert not x["constant_in_train"] and const["constant_in_train"]
    assert color["unseen_categories"] == {"val": 0, "test": 1}
    assert color["categories_in_train"] == 2
    assert report["class_balance"] == {
        "train": {"a": 5, "b": 4},
        "val": {"a": 1, "b": 2},
        "test": {"a": 3, "b": 1},
    }
    assert report["fingerprint"] == bundle.fingerprint
    # The bundle agrees: the row without a target is in no split.
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (9, 3, 4)


def test_findings_and_severities(crafted: Path) -> None:
    report = data_report(load_dataset(cfg(crafted), seed=0))
    found = by_check(report)
    severities = {check: {f["severity"] for f in items} for check, items in found.items()}
    assert severities == {
        "missing_target": {"error"},
        "leakage": {"error"},
        "duplicates": {"warning"},
        "constant_column": {"warning"},
        "missing_values": {"warning"},
        "infinite_values": {"warning"},
        "unseen_categories": {"warning"},
    }
    assert [f["severity"] for f in report["findings"]][:3] == ["error"] * 3  # errors first
    messages = [f["message"] for f in report["findings"]]
    assert "1 row has no value in target column 'label'" in messages[0]
    assert any("2 of 4 test rows are identical to a train row" in m for m in messages)
    assert any("1 of 3 val rows are identical to a train row" in m for m in messages)
    assert any("1 of 9 train rows repeat an earlier train row" in m for m in messages)
    assert any("Column 'const' is constant" in m for m in messages)
    assert any("Column 'x' has 2 missing values (train 1, test 1)" in m for m in messages)
    assert any("Column 'color' has 1 row with a category not seen" in m for m in messages)
    for message in messages:
        assert "\n" not in message and message.endswith(".")
    assert format_finding(report["findings"][0]).startswith("error [missing_target]: ")


def test_validation_modes(crafted: Path, tmp_path: Path) -> None:
    report = data_report(load_dataset(cfg(crafted), seed=0))
    with pytest.raises(UserError) as error:
        check_findings(report, "error")
    message = str(error.value)
    assert message.startswith("Data validation failed: 1 row has no value in target column")
    assert "and 2 more errors" in message and "data.validation=warn" in message
    assert message.endswith(".") and "\n" not in message
    assert check_findings(report, "warn") == report["findings"]
    assert check_findings(report, "off") == []
    with pytest.raises(UserError, match=r"data.validation='strict'.*'error', 'warn', 'off'"):
        check_findings(report, "strict")
    # validate_data writes the report before it raises, so the user can read it.
    bundle = load_dataset(cfg(crafted, validation="error"), seed=0)
    out = tmp_path / "data_report.json"
    with pytest.raises(UserError, match=r"Data validation failed"):
        validate_data(bundle, cfg(crafted, validation="error"), out)
    assert json.loads(out.read_text())["validation"] == "error"
    warned = validate_data(bundle, cfg(crafted, validation="warn"), out)
    assert len(warned["findings"]) == len(report["findings"])
    assert validation_mode(SimpleNamespace()) == "error"  # the default
    with pytest.raises(UserError, match=r"data.validation='loud'"):
        validation_mode(SimpleNamespace(validation="loud"))


def test_validation_off_skips_row_checks(crafted: Path) -> None:
    report = data_report(load_dataset(cfg(crafted, validation="off"), seed=0))
    assert report["duplicates"] is None and report["leakage"] is None
    assert "leakage" not in by_check(report)


def test_report_of_a_raw_table_matches_the_bundle(crafted: Path) -> None:
    table = crafted_table()
    fold = np.array(table.column("fold").to_pylist())
    splits = {role: np.flatnonzero(fold == role) for role in ("train", "val", "test")}
    raw = data_report(table, splits, target="label", features=["x", "const", "color"])
    loaded = data_report(load_dataset(cfg(crafted), seed=0))
    for key in ("rows", "missing_targets", "duplicates", "leakage", "class_balance", "columns"):
        assert raw[key] == loaded[key], key
    assert raw["findings"] == loaded["findings"]


def test_streamed_report_matches_the_in_memory_report(crafted: Path) -> None:
    memory = data_report(load_dataset(cfg(crafted), seed=0))
    streamed = data_report(load_dataset(cfg(crafted, streaming=True), seed=0))
    assert streamed["streaming"] == {"row_groups": 4, "train_row_groups": 2}
    for key in ("rows", "missing_targets", "duplicates", "leakage", "class_balance", "columns"):
        assert streamed[key] == memory[key], key
    assert streamed["findings"] == memory["findings"]


def test_many_categories_are_cut_to_the_most_frequent(tmp_path: Path) -> None:
    colors = ["red"] * 5 + ["green"] * 4 + ["blue"] * 3 + ["red", "blue", "green"]
    fold = ["train"] * 12 + ["val", "test", "test"]
    table = pa.table({"color": colors, "fold": fold, "label": ["a", "b", "c"] * 5})
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    bundle = load_dataset(cfg(path, max_categories=2), seed=0)
    assert bundle.preprocessor.feature_names == ["color=green", "color=red"]
    finding = by_check(data_report(bundle))["many_categories"][0]
    assert finding["severity"] == "warning"
    assert "has 3 categories in train; only the 2 most frequent" in finding["message"]
    # 'blue' in test now counts as unknown: all zeros.
    assert np.all(bundle.test.inputs[0] == 0.0)


def test_regression_report_has_target_statistics(tmp_path: Path) -> None:
    y = np.arange(20, dtype=np.float64) / 4
    fold = ["train"] * 14 + ["val"] * 3 + ["test"] * 3
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"x": np.arange(20.0) % 3, "y": y, "fold": fold}), path)
    report = data_report(load_dataset(cfg(path, target="y"), seed=0))
    assert report["task_kind"] == "regression" and "class_balance" not in report
    train = report["target_stats"]["train"]
    assert train["count"] == 14
    assert train["mean"] == pytest.approx(y[:14].mean())
    assert train["std"] == pytest.approx(y[:14].std())
    assert (train["min"], train["max"]) == (0.0, 3.25)


def test_class_without_train_rows_is_an_error(tmp_path: Path) -> None:
    table = pa.table(
        {
            "x": np.arange(8.0),
            "fold": ["train"] * 5 + ["val", "test", "test"],
            "label": ["a", "b", "a", "b", "a", "b", "c", "a"],
        }
    )
    path = tmp_path / "k.parquet"
    pq.write_table(table, path)
    bundle = load_dataset(cfg(path), seed=0)
    assert bundle.num_classes == 3  # the label set covers every split
    (finding,) = by_check(data_report(bundle))["class_missing_in_train"]
    assert finding["severity"] == "error"
    assert "Class 'c' has no train rows (test 1)" in finding["message"]


def test_array_bundles_are_reported_too(tmp_path: Path) -> None:
    digits = load_dataset(
        SimpleNamespace(source="digits", scale=1 / 16, test_fraction=0.2, val_fraction=0.1), 0
    )
    report = data_report(digits)
    assert report["rows"] == {"train": 1293, "val": 144, "test": 360}
    assert report["duplicates"] == {"train": 0} and report["leakage"] == {"val": 0, "test": 0}
    assert sum(report["class_balance"]["train"].values()) == 1293
    constant = [n for n, c in report["columns"].items() if c["constant_in_train"]]
    assert "x0" in constant  # the digits' corner pixel is always blank
    assert {f["severity"] for f in report["findings"]} == {"warning"}
    check_findings(report, "error")  # warnings do not stop a run

    # An .npz file whose rows repeat: the copies land on both sides of the split.
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(50, 3))
    inputs = np.concatenate([inputs, inputs])
    targets = np.tile(np.arange(2), 50)
    np.savez(tmp_path / "dup.npz", inputs=inputs, targets=np.concatenate([targets[:50]] * 2))
    npz = load_dataset(SimpleNamespace(source="npz", path=str(tmp_path / "dup.npz")), seed=0)
    report = data_report(npz)
    assert report["leakage"]["test"] > 0 and report["duplicates"]["train"] > 0
    with pytest.raises(UserError, match=r"identical to a train row"):
        check_findings(report, "error")


def test_language_model_report(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("some text to model, " * 30)
    bundle = load_dataset(
        SimpleNamespace(
            source="text", path=str(tmp_path), seq_len=8, test_fraction=0.1, val_fraction=0.1
        ),
        0,
    )
    report = data_report(bundle)
    assert report["task_kind"] == "lm"
    assert report["tokens"] == {role: len(getattr(bundle, role)) * 8 for role in report["rows"]}
    assert report["findings"] == []
