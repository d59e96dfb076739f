"""jaxfw-eval and jaxfw-generate on run directories that may come from elsewhere (the
model config's `_target_`s, a malformed config.yaml), and jaxfw-generate's streaming,
Ctrl-C and argument bounds. One tiny lm_tiny run (as in test_lm_recipe) serves every test."""

import math
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import popen_interruptible
from omegaconf import OmegaConf
from test_lm_recipe import SHORT as LM_SHORT

import jaxfw
from jaxfw.cli.generate import FLUSH_BYTES, _print_stream
from jaxfw.errors import UserError
from jaxfw.evaluation.run import evaluate_run
from jaxfw.generate import generate, load_language_model, stream

TOOLS = {"eval": "jaxfw-eval", "generate": "jaxfw-generate"}


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("lm") / "run"
    jaxfw.train(jaxfw.compose("lm_tiny", LM_SHORT), run_dir=run_dir)
    return run_dir


def _copy(lm_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(lm_run, copy, ignore=shutil.ignore_patterns("tb"))
    return copy


def _args(tool: str, run_dir: Path) -> list[str]:
    extra = ["--prompt", "def ", "--max-new-tokens", "5"] if tool == "generate" else []
    return [sys.executable, "-m", f"jaxfw.cli.{tool}", str(run_dir), *extra]


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )


def _one_line_error(proc: subprocess.CompletedProcess, tool: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"{TOOLS[tool]}: error: ")
    assert proc.stdout == ""
    return lines[0]


@pytest.mark.parametrize(
    ("tool", "where"), [("eval", "model"), ("generate", "model"), ("generate", "model.act")]
)
def test_a_callable_named_by_a_run_config_is_never_called(lm_run, tmp_path, tool, where):
    run_dir = _copy(lm_run, tmp_path)
    marker = tmp_path / "marker_created"
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "marker.py").write_text(
        f"import pathlib\n\ndef touch(*args, **kwargs):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('called')\n"
    )
    cfg = OmegaConf.load(run_dir / "config.yaml")
    if where == "model":
        cfg.model = {"_target_": "marker.touch", "num_outputs": 256}
    else:
        cfg.model.act = {"_target_": "marker.touch"}
    OmegaConf.save(cfg, run_dir / "config.yaml")
    # The marker module is importable: only the check stands between it and a call.
    proc = _cli(_args(tool, run_dir), PYTHONPATH=str(modules))
    line = _one_line_error(proc, tool)
    assert f"{run_dir}/config.yaml names {where}._target_='marker.touch', which is" in line
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: [unclosed\n  : x\n", "config.yaml is not valid YAML ("),
        ("- 1\n- 2\n", "config.yaml is not a jaxfw run config; it must be a mapping"),
        (None, "is not a jaxfw run directory (no config.yaml in it)"),
    ],
)
def test_a_malformed_config_is_one_sentence(lm_run, tmp_path, text, message):
    run_dir = _copy(lm_run, tmp_path)
    if text is None:
        (run_dir / "config.yaml").unlink()
    else:
        (run_dir / "config.yaml").write_text(text)
    for load in (evaluate_run, load_language_model):
        with pytest.raises(UserError, match=r"^[^\n]*$") as info:
            load(run_dir)
        assert message in str(info.value) and str(run_dir) in str(info.value)
    if text is not None and text.startswith("model"):  # the commands, once
        for tool in TOOLS:
            line = _one_line_error(_cli(_args(tool, run_dir)), tool)
            assert f"{run_dir}/config.yaml is not valid YAML" in line


def test_generate_streams_and_stops_cleanly_on_ctrl_c(lm_run):
    """Output arrives while sampling goes on (a million bytes would take most of an hour);
    Ctrl-C then ends it with what was generated, a newline and exit code 130."""
    proc = popen_interruptible(
        [sys.executable, "-m", "jaxfw.cli.generate", str(lm_run), "--prompt", "def ",
         "--max-new-tokens", "1000000", "--temperature", "0.8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    received, deadline = b"", time.monotonic() + 240  # a guard against a hang, not a timing check
    try:
        while len(received) < len("def ") + 2 * FLUSH_BYTES and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 1.0)[0]:
                chunk = os.read(proc.stdout.fileno(), 4096)
                assert chunk, proc.stderr.read().decode()  # EOF: the process ended early
                received += chunk
        assert proc.poll() is None  # still sampling: what we read was streamed
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    text = (received + rest).decode("utf-8")
    assert proc.returncode == 130, stderr.decode()
    assert text.startswith("def ") and text.endswith("\n")
    assert len(text.encode()) >= len("def ") + 2 * FLUSH_BYTES
    assert b"Traceback" not in stderr and b"KeyboardInterrupt" not in stderr


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("--temperature", "-0.5", "use a finite number >= 0"),
        ("--temperature", "nan", "use a finite number >= 0"),
        ("--temperature", "inf", "use a finite number >= 0"),
        ("--max-new-tokens", "0", "use a count from 1 to 1,000,000"),
        ("--max-new-tokens", "-3", "use a count from 1 to 1,000,000"),
        ("--max-new-tokens", "10000000", "use a count from 1 to 1,000,000"),
    ],
)
def test_generate_rejects_bad_sampling_arguments(lm_run, flag, value, allowed):
    proc = _cli([*_args("generate", lm_run), f"{flag}={value}"])
    line = _one_line_error(proc, "generate")
    shown = str(float(value)) if flag == "--temperature" else value
    assert f"{flag}={shown} is not allowed; {allowed}" in line


def test_generate_api_has_the_same_bounds(lm_run):
    model = load_language_model(lm_run)
    for kwargs in ({"max_new_tokens": 1_000_001}, {"temperature": math.nan}):
        with pytest.raises(UserError, match="is not allowed"):
            stream(model, "def ", **{"max_new_tokens": 5, **kwargs})
        with pytest.raises(UserError, match="is not allowed"):
            generate(model, "def ", **{"max_new_tokens": 5, **kwargs})


def test_argparse_errors_stay_exit_2(lm_run):
    proc = _cli([*_args("generate", lm_run), "--max-new-tokens=many"])
    assert proc.returncode == 2 and "invalid int value: 'many'" in proc.stderr


def test_streamed_text_keeps_multibyte_characters_whole(capsys):
    # "é" is 2 bytes; placed so that a flush falls between them.
    data = ("x" * (FLUSH_BYTES - 1) + "é" + "日本" * FLUSH_BYTES).encode()
    assert _print_stream(">", iter(data)) == 0
    assert capsys.readouterr().out == ">" + data.decode() + "\n"
