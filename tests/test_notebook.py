"""notebooks/quickstart.ipynb: stored without outputs, and executed end to end (nbclient)
on this venv's Python, in a temporary directory, with its results checked.

The notebook asserts on its own results (test accuracy, parameter count, the evaluation
matching training's, the exported artifact agreeing with the trained module); a failed
assert is a cell error here. This test also reads the numbers it prints."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
KERNEL = "jaxfw-test-venv"  # a kernelspec written for the test: this venv's interpreter
CELL_TIMEOUT_S = 300
LOSS = r"\d+\.\d+"


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    cells = _code_cells(nb)
    assert len(cells) >= 10
    for index, cell in enumerate(cells):
        assert cell.outputs == [], f"code cell {index} has stored outputs"
        assert cell.execution_count is None, f"code cell {index} has an execution count"
    assert nb.metadata.kernelspec.name == "python3"


def _kernelspec(folder: Path, tmpdir: Path) -> Path:
    """A kernelspec running this interpreter (the venv's), with JAX on the CPU and every
    temporary directory (the notebook's run directories) under `tmpdir`."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    env = {"JAX_PLATFORMS": "cpu", "TMPDIR": str(tmpdir)}
    kernel = {"argv": argv, "display_name": "jaxfw test venv", "language": "python", "env": env}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return folder


def _text(cell: nbformat.NotebookNode) -> str:
    """What a cell printed (stdout and stderr) and its plain-text results."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "text/plain" in output.get("data", {}):
            parts.append(output.data["text/plain"] + "\n")
    return "".join(parts)


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no line matching {pattern!r} in the notebook's output:\n{text[-3000:]}"
    return float(match.group(1))


@pytest.mark.slow
def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"  # the kernel's working directory: nothing lands in the repo
    tmpdir = tmp_path / "tmp"
    cwd.mkdir()
    tmpdir.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(_kernelspec(tmp_path / "jupyter", tmpdir)))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Appended to the copy in memory: which interpreter and which jaxfw the kernel ran.
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "import os, sys, jaxfw\n"
            "print('EXECUTABLE', sys.executable)\n"
            "print('JAXFW', jaxfw.__file__)\n"
            "print('CWD', os.getcwd())\n"
            "print('WORKDIR', workdir)"
        )
    )
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(cwd)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the traceback, on any failing cell
    elapsed = time.perf_counter() - start
    print(f"notebook executed in {elapsed:.1f} s")

    code = _code_cells(nb)
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    assert all(cell.execution_count for cell in code), "a code cell did not run"

    probe = _text(nb.cells[-1])
    assert f"EXECUTABLE {sys.executable}\n" in probe
    jaxfw_file = Path(re.search(r"^JAXFW (.+)$", probe, re.MULTILINE).group(1))
    assert jaxfw_file.is_relative_to(ROOT), jaxfw_file  # this checkout's jaxfw
    assert f"CWD {cwd}\n" in probe
    workdir = Path(re.search(r"^WORKDIR (.+)$", probe, re.MULTILINE).group(1))
    assert workdir.is_relative_to(tmpdir), workdir  # the run directories: under tmp_path
    assert list(cwd.iterdir()) == []

    text = "".join(_text(cell) for cell in _code_cells(nb)[:-1])
    assert _number(rf"^digits_mlp test/accuracy (\d\.\d+)  test/loss {LOSS}$", text) > 0.9
    assert _number(rf"^nnx_mlp test/accuracy (\d\.\d+)  test/loss {LOSS}$", text) > 0.9
    assert _number(rf"^linen_mlp test/accuracy (\d\.\d+)  test/loss {LOSS}$", text) > 0.9
    assert _number(r"^85,002 parameters after (\d+) steps$", text) == 300
    assert _number(r"^  accuracy +(\d\.\d+)$", text) > 0.9  # jaxfw.evaluate's table
    agreed = r"^artifact agrees with the trained module on 1797 rows; accuracy (\d\.\d+)$"
    assert _number(agreed, text) > 0.9

    images = [o for cell in code for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the learning curves and the report's confusion matrix
    runs = sorted(p.name for p in workdir.iterdir())
    assert runs == ["digits_mlp", "linen_mlp", "nnx_mlp"]
    assert (workdir / "nnx_mlp" / "eval" / "test-best" / "report.html").is_file()
    assert list((workdir / "nnx_mlp" / "export").iterdir())  # the artifact
