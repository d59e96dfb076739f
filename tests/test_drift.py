"""Data drift (jaxfw.drift, jaxfw-drift): the statistics against scipy, the server's
`DriftMonitor` on real exported artifacts (a shifted feature is flagged and nothing else;
an i.i.d. sample is not; category shifts and missing-value surges are; the window keeps
the last rows / seconds), the offline command on real files, and the monitor's imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from conftest import cli_env
from scipy import stats as scipy_stats

import jaxfw
from jaxfw.distributions import categorical_summary, numeric_summary
from jaxfw.drift import DriftMonitor
from jaxfw.drift.special import chi2_sf, kolmogorov_sf
from jaxfw.drift.stats import chi2_two_sample, js_distance, ks_against_reference, psi
from jaxfw.errors import UserError
from jaxfw.export import export_run

QUICK = ["trainer.eval_every=20", "trainer.progress=off", "trainer.log_every=10"]
DRIFT_CLI = Path(sys.executable).parent / "jaxfw-drift"


def _shop(n: int, seed: int, colors=("red", "green", "blue"), p=None, missing_every=17):
    """A shop table like tests/test_export.py's: numeric size/weight, categorical color and
    store, a label."""
    rng = np.random.default_rng(seed)
    size = rng.normal(size=n)
    color = rng.choice(list(colors), size=n, p=p)
    store = rng.choice([3, 7, 11], size=n)
    label = np.where(size + (color == "red") * 1.5 + 0.3 * rng.normal(size=n) > 0.5, "yes", "no")
    weight = rng.normal(size=n)
    weights = [None if (i + 12) % missing_every == 0 else float(w) for i, w in enumerate(weight)]
    return {
        "size": size.tolist(),
        "color": color.tolist(),
        "store": store.tolist(),
        "weight": weights,
        "label": label.tolist(),
    }


def _write_csv(columns: dict, path: Path) -> Path:
    pacsv.write_csv(pa.table(columns), path)
    return path


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    """{"breast_cancer": artifact dir, "shop": (artifact dir, train csv)}."""
    root = tmp_path_factory.mktemp("drift")
    cancer = jaxfw.train(
        jaxfw.compose("breast_cancer", ["trainer.steps=20", *QUICK]), run_dir=root / "cancer"
    )
    csv = _write_csv(_shop(1500, seed=0), root / "shop.csv")
    overrides = [
        "data=table",
        f"data.path={csv}",
        "data.target=label",
        "data.categorical=[store]",
        "trainer.steps=20",
        "trainer.batch_size=32",
        *QUICK,
    ]
    shop = jaxfw.train(jaxfw.compose(None, overrides), run_dir=root / "shop")
    return {
        "breast_cancer": export_run(cancer.run_dir, platforms=["cpu"]),
        "shop": (export_run(shop.run_dir, platforms=["cpu"]), csv),
    }


def _reference(artifact: Path) -> dict:
    return json.loads((Path(artifact) / "reference.json").read_text())


def _cancer_inputs() -> tuple[np.ndarray, list[str]]:
    from sklearn.datasets import load_breast_cancer  # the same rows jaxfw trained on

    data = load_breast_cancer()
    return np.asarray(data.data, np.float32), list(data.feature_names)


def _statuses(report: dict) -> dict[str, str]:
    return {name: f["status"] for name, f in report["features"].items()}


# ---------------------------------------------------------------------- statistics


def test_kolmogorov_and_chi2_tails_match_scipy():
    for x in [0.05, 0.3, 0.6, 0.9, 1.0, 1.2, 1.36, 2.0, 3.0]:
        assert kolmogorov_sf(x) == pytest.approx(scipy_stats.kstwobign.sf(x), abs=1e-10)
    for dof in [1, 2, 5, 30, 300]:
        for x in [0.01, 0.5, 1.0, 4.0, 10.0, 50.0, 400.0]:
            assert chi2_sf(x, dof) == pytest.approx(scipy_stats.chi2.sf(x, dof), abs=1e-10)


def test_ks_against_the_reference_percentiles_agrees_with_ks_2samp():
    rng = np.random.default_rng(1)
    train = rng.normal(size=4000)
    summary = numeric_summary(train)
    for shift, size in [(0.0, 1500), (0.06, 2000), (0.1, 1000), (0.5, 300)]:
        new = rng.normal(shift, 1.0, size=size)
        d, pvalue, used = ks_against_reference(summary["percentiles"], len(train), new)
        expected = scipy_stats.ks_2samp(train, new, method="asymp")
        assert used == size
        assert d == pytest.approx(expected.statistic, abs=0.012)
        # p-values move fast with D; agree on the decision and roughly on the value.
        assert abs(pvalue - expected.pvalue) < 0.15 or (pvalue < 1e-6 and expected.pvalue < 1e-6)
        assert (pvalue < 0.05) == (expected.pvalue < 0.05)


def test_psi_js_and_chi2_on_known_shares():
    ref = np.array([0.5, 0.5, 0.0])
    assert psi(ref, ref) == 0.0
    assert psi(ref, [0.25, 0.75, 0.0]) == pytest.approx(
        (0.25 - 0.5) * np.log(0.5) + (0.75 - 0.5) * np.log(1.5)
    )
    assert js_distance(ref, ref) == 0.0
    assert js_distance([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    statistic, dof, pvalue = chi2_two_sample([0.5, 0.5, 0.0], 1000, np.array([300, 700, 0]))
    table = np.array([[500, 500], [300, 700]])
    expected = scipy_stats.chi2_contingency(table, correction=False)
    assert (statistic, dof) == (pytest.approx(expected.statistic), 1)
    assert pvalue == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)


# ---------------------------------------------------------------------- the monitor


def test_a_shifted_feature_is_flagged_and_the_others_are_not(artifacts):
    inputs, names = _cancer_inputs()
    reference = _reference(artifacts["breast_cancer"])
    assert list(reference["features"]) == names
    monitor = DriftMonitor(reference, "features", window_rows=10_000)
    shifted = inputs.copy()
    column = names.index("mean radius")
    shifted[:, column] += 2 * inputs[:, column].std()
    monitor.observe(shifted[:300])
    monitor.observe(shifted[300:])
    report = monitor.report()
    json.dumps(report, allow_nan=False)  # JSON-ready as it is
    statuses = _statuses(report)
    assert statuses["mean radius"] == "drift"
    assert {s for n, s in statuses.items() if n != "mean radius"} == {"ok"}
    assert report["drifted_features"] == ["mean radius"]
    assert report["dataset_drift"] is False
    assert report["share_drifted"] == pytest.approx(1 / 30)
    assert report["window"]["rows"] == len(inputs)
    radius = report["features"]["mean radius"]
    assert radius["psi"] >= 0.25 and radius["ks_pvalue"] < 1e-6
    assert len(radius["reference_shares"]) == len(radius["current_shares"]) == len(radius["bins"])
    assert monitor.status_changes(report) == [("mean radius", "ok", "drift")]
    assert monitor.status_changes() == []  # nothing new since


def test_the_training_distribution_is_not_flagged(artifacts):
    inputs, _ = _cancer_inputs()
    monitor = DriftMonitor(_reference(artifacts["breast_cancer"]), "features")
    for start in range(0, len(inputs), 64):  # as a server sees it: batch by batch
        monitor.observe(inputs[start : start + 64])
    report = monitor.report()
    assert report["drifted_features"] == [] and report["dataset_drift"] is False
    assert max(f["psi"] for f in report["features"].values()) < 0.1
    assert monitor.status_changes() == []


def test_table_traffic_categorical_shift_and_missing_surge(artifacts):
    artifact, _ = artifacts["shop"]
    reference = _reference(artifact)
    assert reference["features"]["store"]["kind"] == "categorical"

    same = DriftMonitor(reference, "table")
    same.observe(_shop(2000, seed=5))  # another draw of the training distribution
    report = same.report()
    assert report["drifted_features"] == [] and not report["dataset_drift"], _statuses(report)

    shifted = DriftMonitor(reference, "table")
    # Mostly red, a new colour, the store as JSON numbers and text, weight missing a third.
    rows = _shop(2000, seed=6, colors=("red", "green", "purple"), p=[0.7, 0.2, 0.1])
    rows["store"] = [str(s) if i % 2 else s for i, s in enumerate(rows["store"])]
    rows["weight"] = [None if i % 3 == 0 else w for i, w in enumerate(rows["weight"])]
    shifted.observe(rows)
    report = shifted.report()
    statuses = _statuses(report)
    assert statuses["color"] == "drift" and statuses["weight"] == "drift"
    assert statuses["size"] == "ok" and statuses["store"] == "ok"
    color = report["features"]["color"]
    assert color["js"] >= 0.1 and color["psi"] >= 0.25 and color["chi2_pvalue"] < 1e-6
    assert color["current_shares"][color["bins"].index("other")] == pytest.approx(0.1, abs=0.03)
    weight = report["features"]["weight"]
    assert weight["missing_share"] == pytest.approx(1 / 3 + 2 / 3 / 17, abs=0.02)
    assert report["dataset_drift"] is True  # 2 of 4 features: half


def _two_features() -> dict:
    rng = np.random.default_rng(3)
    return {
        "features": {
            "a": numeric_summary(rng.normal(size=5000)),
            "b": numeric_summary(rng.uniform(size=5000)),
        }
    }


def _batch(rng, n: int, shift: float = 0.0) -> np.ndarray:
    return np.c_[rng.normal(shift, 1.0, size=n), rng.uniform(size=n)]


def test_the_window_keeps_the_last_rows():
    rng = np.random.default_rng(4)
    monitor = DriftMonitor(_two_features(), "features", window_rows=1000)
    monitor.observe(_batch(rng, 1000, shift=3.0))
    assert _statuses(monitor.report())["a"] == "drift"
    monitor.observe(_batch(rng, 600))  # the shifted batch leaves: 600 + 1000 > 1000
    report = monitor.report()
    assert report["window"]["rows"] == 600 and report["window"]["observed_rows"] == 1600
    assert _statuses(report) == {"a": "ok", "b": "ok"}
    monitor.observe(_batch(rng, 5000, shift=3.0))  # larger than the window: its last rows
    report = monitor.report()
    assert report["window"]["rows"] == 1000 and _statuses(report)["a"] == "drift"
    assert report["features"]["a"]["ks_values"] == 1000


def test_the_window_keeps_the_last_seconds():
    rng = np.random.default_rng(5)
    now = [100.0]
    monitor = DriftMonitor(
        _two_features(), "features", window_rows=100_000, window_seconds=60, clock=lambda: now[0]
    )
    monitor.observe(_batch(rng, 800, shift=3.0))
    now[0] += 30
    monitor.observe(_batch(rng, 800))
    report = monitor.report()
    assert report["window"]["rows"] == 1600 and report["window"]["span_s"] == 30
    assert _statuses(report)["a"] == "drift"  # half the rows shifted
    now[0] += 31  # the shifted batch is 61 s old
    report = monitor.report()
    assert report["window"]["rows"] == 800 and _statuses(report)["a"] == "ok"
    now[0] += 60
    report = monitor.report()
    assert report["window"]["rows"] == 0 and _statuses(report) == {"a": "no_data", "b": "no_data"}
    assert report["dataset_drift"] is False


def test_tiny_batches_merge_and_the_window_stays_bounded():
    rng = np.random.default_rng(6)
    monitor = DriftMonitor(_two_features(), "features", window_rows=640)
    for _ in range(2000):
        monitor.observe(_batch(rng, 1))
    report = monitor.report()
    assert 630 <= report["window"]["rows"] <= 640
    assert len(monitor._buckets) <= 70
    assert _statuses(report) == {"a": "ok", "b": "ok"}


def test_byte_tokens_are_the_byte_feature():
    text = np.frombuffer(b"the quick brown fox jumps over the lazy dog " * 50, np.uint8)
    counts = {str(b): int(n) for b, n in enumerate(np.bincount(text)) if n}
    reference = {"features": {"byte": categorical_summary(counts, max_categories=256)}}
    monitor = DriftMonitor(reference, "tokens")
    monitor.observe(text[: 40 * 20].reshape(40, 20).astype(np.int32))
    assert _statuses(monitor.report()) == {"byte": "ok"}
    digits = np.frombuffer(b"0123456789" * 80, np.uint8).reshape(40, 20)
    monitor.observe(np.concatenate([digits, digits]).astype(np.int64))
    report = monitor.report()
    assert report["features"]["byte"]["status"] == "drift"
    byte = report["features"]["byte"]
    assert byte["current_shares"][byte["bins"].index("other")] == pytest.approx(2 / 3)


def test_wide_inputs_are_the_single_feature_all():
    rng = np.random.default_rng(7)
    reference = {"features": {"all": numeric_summary(rng.integers(0, 17, size=(500, 64)))}}
    monitor = DriftMonitor(reference, "features", window_rows=400)
    monitor.observe(rng.integers(0, 17, size=(400, 8, 8)))  # images [n, 8, 8]
    report = monitor.report()
    assert _statuses(report) == {"all": "ok"}
    assert report["features"]["all"]["count"] == 400 * 64
    monitor.observe(np.minimum(rng.integers(0, 17, size=(400, 8, 8)) + 6, 16))
    assert _statuses(monitor.report()) == {"all": "drift"}


def test_monitor_mistakes_are_user_errors():
    with pytest.raises(UserError, match="Input kind 'images'"):
        DriftMonitor(_two_features(), "images")
    with pytest.raises(UserError, match="window_rows"):
        DriftMonitor(_two_features(), "features", window_rows=0)
    monitor = DriftMonitor(_two_features(), "features")
    with pytest.raises(UserError, match="3 values per row; the drift reference has 2"):
        monitor.observe(np.zeros((4, 3)))


def test_importing_the_monitor_loads_no_heavy_dependency():
    code = (
        "import sys, jaxfw.drift, jaxfw.drift.monitor\n"
        "heavy = ('pyarrow', 'scipy', 'flax', 'optax', 'orbax', 'grain', 'hydra', "
        "'matplotlib', 'jax')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------- jaxfw-drift


def _drift_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    if not DRIFT_CLI.exists():
        pytest.fail(f"{DRIFT_CLI} is missing; run pip install --no-deps -e .")
    env = cli_env(cwd)
    return subprocess.run(
        [str(DRIFT_CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_flags_a_shifted_feature_and_writes_json_and_html(artifacts, tmp_path):
    inputs, names = _cancer_inputs()
    columns = {name: inputs[:, i].astype(np.float64) for i, name in enumerate(names)}
    columns["mean texture"] = columns["mean texture"] + 2 * columns["mean texture"].std()
    columns["id"] = np.arange(len(inputs))  # extra columns are ignored
    pq_path = tmp_path / "new.parquet"
    import pyarrow.parquet as pq  # only this test writes Parquet

    pq.write_table(pa.table(columns), pq_path)
    result = _drift_cli([str(artifacts["breast_cancer"]), str(pq_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1 of 30 features drifted (mean texture); dataset drift: no" in result.stdout
    out = tmp_path / "drift-new"
    document = json.loads((out / "drift.json").read_text())
    assert document["drifted_features"] == ["mean texture"]
    assert document["rows"] == len(inputs) and document["dataset_drift"] is False
    assert document["thresholds"]["psi_drift"] == 0.25
    page = (out / "drift.html").read_text()
    assert page.count("data:image/png;base64,") == 30
    assert "<td class=drift>drift</td>" in page and "mean texture" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained


def test_cli_on_a_table_by_registry_reference(artifacts, tmp_path):
    from jaxfw.registry import Registry  # only this test registers

    artifact, train_csv = artifacts["shop"]
    registry = Registry(tmp_path / "registry")
    registry.register(artifact, "shop")
    registry.set_alias("shop", "production", 1)
    out = tmp_path / "report"
    args = ["shop@production", str(train_csv), "--out", str(out), "--registry", str(registry.path)]
    result = _drift_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "0 of 4 features drifted; dataset drift: no" in result.stdout
    document = json.loads((out / "drift.json").read_text())
    assert {f["status"] for f in document["features"].values()} == {"ok"}
    # The file holds the training rows (and the val/test ones): close to the reference.
    assert max(f["psi"] for f in document["features"].values()) < 0.02

    shifted = _shop(1500, seed=9, colors=("red", "green"), p=[0.9, 0.1], missing_every=2)
    csv = _write_csv(shifted, tmp_path / "shifted.csv")
    result = _drift_cli([str(artifact), str(csv), "--out", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    document = json.loads((out / "drift.json").read_text())
    assert sorted(document["drifted_features"]) == ["color", "weight"]
    assert document["dataset_drift"] is True
    assert document["features"]["weight"]["missing_share"] == pytest.approx(0.5)
    assert document["features"]["weight"]["ks_pvalue"] > 0.05  # present values as before


def test_cli_mistakes_exit_2_with_one_line(artifacts, tmp_path):
    artifact, train_csv = artifacts["shop"]
    no_size = _shop(50, seed=1)
    del no_size["size"]
    bad_numbers = _shop(50, seed=1)
    bad_numbers["weight"] = [
        "heavy" if i == 3 else "" if w is None else str(w)
        for i, w in enumerate(bad_numbers["weight"])
    ]
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"\x00\x01 not parquet at all")
    cases = {
        "does not exist": [str(artifact), str(tmp_path / "none.csv")],
        "has no column 'size'; the model's reference expects 4 columns": [
            str(artifact),
            str(_write_csv(no_size, tmp_path / "no_size.csv")),
        ],
        "Column 'weight' must be numeric but row 4 holds 'heavy'": [
            str(artifact),
            str(_write_csv(bad_numbers, tmp_path / "bad.csv")),
        ],
        "is not a readable PARQUET file": [str(artifact), str(garbage)],
        "is not a jaxfw artifact": [str(tmp_path), str(train_csv)],
        "unsupported extension '.txt'": [str(artifact), str(tmp_path / "x.txt")],
        "The following arguments are required: DATA": [str(artifact)],
    }
    for message, args in cases.items():
        result = _drift_cli(args, tmp_path)
        assert result.returncode == 2, (message, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("jaxfw-drift: error: "), result.stderr
        assert message in lines[0], lines[0]
