"""A user's own table through the CLI: CSV classification, Parquet regression with its
evaluation report, and one-line mistakes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow

SHORT = [
    "trainer.steps=150",
    "trainer.eval_every=50",
    "trainer.progress=log",
    "trainer.batch_size=32",
]


def _table(n: int = 400, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    size = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], size=n)
    weight = rng.normal(size=n)
    label = np.where(size + (color == "red") * 1.5 + 0.3 * rng.normal(size=n) > 0.5, "yes", "no")
    price = 3.0 * size - 2.0 * (color == "blue") + 0.5 * weight + 100.0 + 0.1 * rng.normal(size=n)
    return pa.table(
        {"size": size, "color": color, "weight": weight, "label": label, "price": price}
    )


def _run(args: list[str], cwd: Path, module: str = "jaxfw") -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TMPDIR": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_csv_classification_saves_its_preprocessing(tmp_path):
    pacsv.write_csv(_table().drop(["price"]), tmp_path / "shop.csv")
    proc = _run(
        ["data=table", "data.path=shop.csv", "data.target=label", *SHORT, "hydra.run.dir=run"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "run"
    prep = json.loads((run / "preprocessing.json").read_text())
    assert "color" in json.dumps(prep) and "size" in json.dumps(prep)
    report = json.loads((run / "data_report.json").read_text())
    assert report["rows"]["train"] + report["rows"]["val"] + report["rows"]["test"] == 400
    metrics = json.loads((run / "report/metrics.json").read_text())
    assert metrics["class_names"] == ["no", "yes"]
    assert metrics["metrics"]["accuracy"] > 0.8


def test_parquet_regression_reports_residuals(tmp_path):
    pq.write_table(_table().drop(["label"]), tmp_path / "prices.parquet", row_group_size=64)
    args = [
        "data=table",
        "data.path=prices.parquet",
        "data.target=price",
        "task=regression",
        *SHORT,
    ]
    proc = _run([*args, "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test/r2" in proc.stdout
    document = json.loads((tmp_path / "run/report/metrics.json").read_text())
    assert document["task"] == "regression" and document["metrics"]["r2"] > 0.8
    assert (tmp_path / "run/report/residuals.png").stat().st_size > 5000
    again = _run([str(tmp_path / "run"), "checkpoint=latest"], tmp_path, module="jaxfw.cli.eval")
    assert again.returncode == 0, again.stderr
    assert "test/mse" in again.stdout


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["data.target=colour"], "colour"),  # unknown column: the message lists the columns
        (["data.target=label", "data.path=missing.csv"], "missing.csv"),
        (["data.target=label", "task=regression"], "task=regression does not fit"),
    ],
)
def test_table_mistakes_are_one_line(tmp_path, overrides, fragment):
    pacsv.write_csv(_table().drop(["price"]), tmp_path / "shop.csv")
    proc = _run(["data=table", "data.path=shop.csv", *overrides, "trainer.steps=5"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("jaxfw-train: error:") and fragment in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
