"""requirements.lock.txt: every package pinned with its hashes, every dependency of
pyproject.toml (with the test tools) in it, and run.json saying whether the running
environment is the locked one."""

import importlib.metadata
import json
import re
import tomllib
from pathlib import Path

import jaxfw
from jaxfw.observe.lock import LOCK_FILE, lock_status, normalized, read_pins

REPO = Path(jaxfw.__file__).resolve().parent.parent
LOCK = REPO / LOCK_FILE


def _requirements(block: str) -> list[tuple[str, str]]:
    """(name, version) of each requirement entry: a `name==version` line and its hashes."""
    entries = re.split(r"\n(?=[A-Za-z0-9])", block)
    return [(e.split("==")[0], e) for e in entries if "==" in e.split("\n")[0]]


def test_every_locked_package_is_pinned_with_a_hash():
    text = LOCK.read_text()
    entries = _requirements(text)
    assert len(entries) > 50
    for name, entry in entries:
        first = entry.split("\n")[0]
        assert re.match(rf"^{re.escape(name)}==[0-9][^\s]* \\$", first), first
        assert "--hash=sha256:" in entry, f"{name} has no hash"
    # Nothing unpinned or from a direct URL slipped in.
    loose = [
        line for line in text.splitlines()
        if line and not line.startswith((" ", "#")) and "==" not in line
    ]  # fmt: skip
    assert not loose, loose


def test_the_lock_covers_every_dependency_pyproject_declares():
    """A dependency added to pyproject.toml without `make lock` fails here."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    declared = list(project["dependencies"])
    named = re.findall(r"jaxfw\[([\w,]+)\]", " ".join(extras["test"]))  # jaxfw[serve,...]
    for extra in ("test", *",".join(named).split(",")):
        declared += [d for d in extras[extra] if not d.startswith("jaxfw[")]
    pins = read_pins(LOCK)
    missing = []
    for requirement in declared:
        if "win32" in requirement and "!=" not in requirement:
            continue  # a Windows-only requirement: not on the locked platform
        name = normalized(re.split(r"[\s\[<>=!;~]", requirement, maxsplit=1)[0])
        if name not in pins:
            missing.append(name)
    assert not missing, f"not in {LOCK_FILE} (run `make lock`): {missing}"


def test_lock_status_names_each_package_that_differs(tmp_path):
    numpy = importlib.metadata.version("numpy")
    (tmp_path / LOCK_FILE).write_text(
        f"numpy=={numpy} \\\n    --hash=sha256:00\nrich==0.0.1 \\\n    --hash=sha256:00\n"
        "not-installed-anywhere==1.0 \\\n    --hash=sha256:00\n"
    )
    status = lock_status(tmp_path)
    assert status["file"] == LOCK_FILE and status["matched"] is False
    assert status["packages"] == 3 and status["mismatch_count"] == 2
    assert {m["package"]: m["installed"] for m in status["mismatches"]} == {
        "rich": importlib.metadata.version("rich"),
        "not-installed-anywhere": None,
    }
    (tmp_path / "same").mkdir()
    (tmp_path / "same" / LOCK_FILE).write_text(f"numpy=={numpy}\n")
    assert lock_status(tmp_path / "same")["matched"] is True
    assert lock_status(tmp_path / "none") == {"file": None, "matched": None}


def test_run_json_records_whether_the_environment_is_the_locked_one(tmp_path):
    cfg = jaxfw.compose("digits_mlp", ["trainer.steps=2", "trainer.progress=off"])
    jaxfw.train(cfg, tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["lock"]
    assert recorded["file"] == LOCK_FILE
    assert recorded == lock_status(REPO)
    assert recorded["matched"] == (recorded["mismatch_count"] == 0)
