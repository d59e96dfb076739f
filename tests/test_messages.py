"""Messages that once misled (issue 11), through the real `jaxfw-train` command: each mistake
ends with one sentence naming the bad value, exit code 2 and no traceback; a run on the user's
own table is filed under the table's name.

The messages themselves are tested in detail against the Python functions in test_config.py
and test_data_table.py; these tests check that the command shows them as they are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import ERROR_PREFIX, describe, run_cli

pytestmark = pytest.mark.slow


def _shop_csv(path: Path, rows: int = 120) -> Path:
    lines = [f"{i / 10:.1f},{'yes' if i % 2 else 'no'}" for i in range(rows)]  # distinct rows
    path.write_text("size,label\n" + "\n".join(lines) + "\n")
    return path


def _latin1_csv(path: Path) -> Path:
    rows = "".join(f"{i},{'Zürich' if i % 3 else 'Köln'},{'ab'[i % 2]}\n" for i in range(30))
    path.write_bytes(f"x,city,label\n{rows}".encode("latin-1"))
    return path


def _error_line(proc) -> str:
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stderr + proc.stdout, describe(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), describe(proc)
    return lines[0].removeprefix(ERROR_PREFIX).strip()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["trainer.stëps=5"],
            "Unknown config key 'trainer.stëps' (did you mean 'trainer.steps'?); valid keys "
            "under 'trainer': steps, ",
        ),
        (["trainer.steps=fünf"], "Invalid value 'fünf' for 'trainer.steps': expected an integer."),
        (
            ["optimizer.lr=inf"],
            "Invalid value inf for 'optimizer.lr': must be a finite number greater than 0.",
        ),
        (["name="], "Invalid value '' for 'name': runs are filed under runs/<name>/, "),
        (
            ["data=table", "data.path=cities.csv", "data.target=label"],
            "Data file 'cities.csv' is not UTF-8 text (line 2, byte offset 16, holds the byte "
            "0xf6); convert it, e.g. from Latin-1 with: iconv -f latin1 -t utf-8 cities.csv > "
            "cities.utf8.csv.",
        ),
    ],
    ids=["non-ascii-key", "non-ascii-value", "infinite-lr", "empty-name", "latin1-csv"],
)
def test_mistake_is_one_sentence_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    _latin1_csv(tmp_path / "cities.csv")
    message = _error_line(run_cli([*args, "trainer.steps=5"], tmp_path, timeout=120))
    assert message.startswith(expected), message


@pytest.mark.parametrize("name", ["'café'", "café"], ids=["quoted", "unquoted"])
def test_non_ascii_name_names_the_run_directory(tmp_path: Path, name: str) -> None:
    # Hydra reads a non-ASCII word only quoted; jaxfw-train quotes a plain word for the user.
    proc = run_cli([f"name={name}", "--cfg", "job", "--resolve"], tmp_path, timeout=120)
    assert proc.returncode == 0, describe(proc)
    assert re.search(r"^run_dir: runs/café/\d{4}-", proc.stdout, re.M), proc.stdout


def test_table_run_is_filed_under_the_table_name(tmp_path: Path) -> None:
    _shop_csv(tmp_path / "shop.csv")
    table = ["data=table", "data.path=shop.csv", "data.target=label"]
    # --cfg job shows where the name comes from, --resolve what it is.
    shown = run_cli([*table, "--cfg", "job"], tmp_path, timeout=120)
    assert shown.returncode == 0, describe(shown)
    assert "name: ${jaxfw.data_name:${data.path},digits_mlp}" in shown.stdout
    resolved = run_cli([*table, "--cfg", "job", "--resolve"], tmp_path, timeout=120)
    assert re.search(r"^name: shop$", resolved.stdout, re.M), describe(resolved)
    assert re.search(r"^run_dir: runs/shop/\d{4}-", resolved.stdout, re.M), describe(resolved)

    short = [
        "trainer.steps=4",
        "trainer.batch_size=16",
        "trainer.eval_every=2",
        "trainer.log_every=2",
    ]
    proc = run_cli([*table, *short, "trainer.progress=log"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    (run_dir,) = (tmp_path / "runs" / "shop").iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-[0-9a-f]{6}", run_dir.name)
    assert json.loads((run_dir / "run.json").read_text())["config_name"] == "shop"
    assert f"runs/shop/{run_dir.name}" in proc.stdout  # the closing summary's run_dir
    assert not (tmp_path / "runs" / "digits_mlp").exists()
