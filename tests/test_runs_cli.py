"""`jaxfw-runs` (list, filter, sort, diff of run directories) and the HParams summary
written into tb/: three tiny real runs, made once for the module."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata

from jaxfw.cli.runs import main

BASE = ["trainer.steps=20", "trainer.eval_every=10", "trainer.progress=off"]
# (run dir name, lr, seed): lr and seed vary, trainer.steps does not.
RUNS = [("a", "0.003", 0), ("b", "0.01", 0), ("c", "0.003", 1)]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    import jaxfw  # lazily: the training stack loads only for this fixture

    root = tmp_path_factory.mktemp("runs")
    for name, lr, seed in RUNS:
        cfg = jaxfw.compose("digits_mlp", [*BASE, f"optimizer.lr={lr}", f"seed={seed}"])
        jaxfw.train(cfg, run_dir=root / "digits_mlp" / name)
    return root


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _json(argv: list[str], capsys) -> list[dict]:
    code, out, err = _run([*argv, "--format", "json"], capsys)
    assert code == 0, err
    return json.loads(out)


def test_json_rows_list_only_the_config_values_that_differ(runs_dir, capsys) -> None:
    rows = _json([str(runs_dir)], capsys)
    assert [r["run"] for r in rows] == ["digits_mlp/a", "digits_mlp/b", "digits_mlp/c"]
    row = rows[0]
    assert row["name"] == "digits_mlp" and row["status"] == "completed"
    assert row["start_time"] and row["duration_s"] > 0
    assert {"optimizer.lr", "seed"} <= set(row)
    assert "trainer.steps" not in row and "run_dir" not in row
    assert [r["optimizer.lr"] for r in rows] == [0.003, 0.01, 0.003]
    assert [r["seed"] for r in rows] == [0, 0, 1]
    for name in ("eval/accuracy", "eval/loss", "test/accuracy", "test/loss"):
        assert isinstance(row[name], float), name
    assert row["best_metric"] == "eval/accuracy" and isinstance(row["best"], float)
    assert len(row["data"]) == 12
    assert rows[0]["data"] == rows[1]["data"]  # one data set


def test_where_filters_on_config_keys_and_run_fields(runs_dir, capsys) -> None:
    rows = _json([str(runs_dir), "--where", "optimizer.lr=3e-3"], capsys)
    assert [r["run"] for r in rows] == ["digits_mlp/a", "digits_mlp/c"]
    # Among the runs listed only the seed differs now.
    assert "seed" in rows[0] and "optimizer.lr" not in rows[0]
    rows = _json([str(runs_dir), "--where", "optimizer.lr=0.003", "--where", "seed=1"], capsys)
    assert [r["run"] for r in rows] == ["digits_mlp/c"]
    assert len(_json([str(runs_dir), "--where", "status=completed"], capsys)) == 3
    assert _json([str(runs_dir), "--where", "status=failed"], capsys) == []


def test_sort_descending_by_default_and_ascending_with_asc(runs_dir, capsys) -> None:
    rows = _json([str(runs_dir), "--sort", "test/loss"], capsys)
    losses = [r["test/loss"] for r in rows]
    assert losses == sorted(losses, reverse=True)
    rows = _json([str(runs_dir), "--sort", "test/loss:asc"], capsys)
    losses = [r["test/loss"] for r in rows]
    assert losses == sorted(losses)


def test_csv_and_plain_table(runs_dir, capsys) -> None:
    code, out, err = _run([str(runs_dir), "--format", "csv"], capsys)
    assert code == 0, err
    records = list(csv.DictReader(io.StringIO(out)))
    assert [float(r["optimizer.lr"]) for r in records] == [0.003, 0.01, 0.003]
    assert float(records[0]["test/accuracy"]) > 0
    code, out, err = _run([str(runs_dir)], capsys)  # captured: not a terminal, plain text
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("3 of 3 runs")
    header = lines[1].split()
    assert header[:3] == ["run", "name", "status"] and "optimizer.lr" in header
    assert "trainer.steps" not in header
    assert len(lines) == 5


def test_diff_names_the_differing_key_with_both_values(runs_dir, capsys) -> None:
    a, b = runs_dir / "digits_mlp" / "a", runs_dir / "digits_mlp" / "b"
    code, out, err = _run(["diff", str(a), str(b)], capsys)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("optimizer.lr"))
    assert line.split()[1:] == ["0.003", "0.01"]
    assert "seed" not in out.split("packages")[0].split("config")[1]
    assert "test/accuracy" in out and "data fingerprint" in out
    code, out, err = _run(["diff", str(a), str(b), "--format", "json"], capsys)
    report = json.loads(out)
    assert report["config"] == {"optimizer.lr": [0.003, 0.01]}
    assert report["packages"] == {}
    assert set(report["metrics"]) >= {"test/accuracy", "test/loss"}


def test_an_unreadable_run_is_skipped_with_one_warning(runs_dir, tmp_path, capsys) -> None:
    root = tmp_path / "runs"
    shutil.copytree(runs_dir / "digits_mlp" / "a", root / "good", ignore=_only_records)
    (root / "broken").mkdir()
    (root / "broken" / "run.json").write_text("{not json")
    code, out, err = _run([str(root), "--format", "json"], capsys)
    assert code == 0
    assert [r["run"] for r in json.loads(out)] == ["good"]
    assert len(err.strip().splitlines()) == 1 and "broken" in err and "warning" in err


def _only_records(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n not in ("run.json", "config.yaml")]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["{missing}"], "nowhere"),
        (["{empty}"], "no run directories"),
        (["{runs}", "--where", "optimizer.lr"], "optimizer.lr"),
        (["{runs}", "--where", "nosuch.key=1"], "nosuch.key"),
        (["{runs}", "--sort", "test/nosuch"], "test/nosuch"),
        (["{runs}", "--sort", "test/loss:up"], "test/loss:up"),
        (["{runs}", "--format", "xml"], "xml"),
        (["diff", "{empty}", "{empty}"], "not a run directory"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(runs_dir, tmp_path, capsys, argv, named) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nowhere", "empty": tmp_path / "empty", "runs": runs_dir}
    code, _out, err = _run([arg.format(**paths) for arg in argv], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("jaxfw-runs: error: ") and named.lower() in err.lower()
    assert "Traceback" not in err


def test_module_entry_point(runs_dir) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jaxfw.cli.runs", str(runs_dir), "--where", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_tensorboard_hparams_hold_the_config_and_the_metrics(runs_dir) -> None:
    for name, lr, seed in RUNS:
        tb = runs_dir / "digits_mlp" / name / "tb"
        acc = event_accumulator.EventAccumulator(str(tb), size_guidance={"tensors": 0})
        acc.Reload()
        content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
        start = hparams_metadata.parse_session_start_info_plugin_data(
            content[hparams_metadata.SESSION_START_INFO_TAG]
        )
        assert start.hparams["optimizer.lr"].number_value == pytest.approx(float(lr))
        assert start.hparams["seed"].number_value == seed
        assert start.hparams["trainer.steps"].number_value == 20
        assert start.hparams["model.hidden"].string_value.startswith("[")
        assert "run_dir" not in start.hparams
        end = hparams_metadata.parse_session_end_info_plugin_data(
            content[hparams_metadata.SESSION_END_INFO_TAG]
        )
        assert end.status == api_pb2.Status.STATUS_SUCCESS
        # The dashboard's metric columns: the run's scalar tags, final values last.
        tags = set(acc.Tags()["tensors"])
        assert {"test/accuracy", "test/loss", "eval/accuracy", "eval/loss"} <= tags
