"""The model registry (`jaxfw.registry.Registry`, `jaxfw-registry`): versions, aliases,
tags, history and delivery statistics on real files; the command through real
subprocesses, 8 of them registering at once, one SIGKILLed mid-register; every bad input
is one sentence, exit code 2 and a registry left byte for byte as it was."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import describe, read_only

from jaxfw.artifact.layout import CARD, CONTENT_FILES, MANIFEST, MODEL
from jaxfw.artifact.manifest import content_hash, verify_artifact, write_manifest
from jaxfw.errors import UserError
from jaxfw.registry import Registry
from jaxfw.registry.deploys import bucket
from jaxfw.registry.store import PAUSE_ENV

ERROR = "jaxfw-registry: error:"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


# ------------------------------------------------------------------ helpers


def make_artifact(folder: Path, index: int = 0, **card: object) -> Path:
    """A synthetic export: the 7 content files (small bytes that differ by `index`), a card
    with varied metrics and config, and the manifest jaxfw-export would write."""
    folder.mkdir(parents=True)
    finished = T0 - timedelta(days=1)
    document = {
        "task": "classification",
        "run_id": f"run-{index}",
        "run_dir": f"/runs/{index}",
        "run_name": f"digits-{index}",
        "checkpoint": {"kind": "best", "step": 100 * (index + 1)},
        "metrics": {"test/accuracy": 0.9 + index / 100, "test/loss": 0.5 - index / 100},
        "data_fingerprint": "fp-a" if index < 2 else "fp-b",
        "config": {
            "optimizer": {"name": "adam", "lr": 0.001 * (index + 1)},
            "model": {"width": 64},
            "trainer": {"steps": 100},
        },
        "git": {"commit": f"abc{index:04d}", "dirty": index % 2 == 1},
        "packages": {"jax": "0.4.30"},
        "exported_at": "2026-03-01T10:00:00Z",
        "jax_version": "0.4.30",
        "run_started_at": (finished - timedelta(hours=1)).isoformat(),
        "run_finished_at": finished.isoformat(),
        "parameter_count": 1000 + index,
        "platforms": ["cpu"],
        **card,
    }
    for name in CONTENT_FILES:
        (folder / name).write_bytes(f"{name} of model {index}\n".encode())
    (folder / CARD).write_text(json.dumps(document))
    write_manifest(folder, jax_version="0.4.30", exported_at="2026-03-01T10:00:00Z")
    return folder


class Clock:
    """A settable clock for Registry(clock=...)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for a folder)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxfw.cli.registry", *args]


def registry_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, describe(proc)
    return proc.stdout


def one_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), describe(proc)
    return lines[0]


@pytest.fixture
def exports(tmp_path):
    """Four different exports, made on first use."""
    made: dict[int, Path] = {}

    def get(index: int, **card: object) -> Path:
        if index not in made:
            made[index] = make_artifact(tmp_path / f"export{index}", index, **card)
        return made[index]

    return get


# ------------------------------------------------------------------ versions and names


def test_register_numbers_versions_and_identical_content_is_the_same_version(tmp_path, exports):
    registry = Registry(tmp_path / "reg", clock=Clock())
    first = registry.register(exports(0), "digits", {"owner": "ana"})
    second = registry.register(exports(1), "digits")
    assert (first.version, first.created, second.version, second.created) == (1, True, 2, True)
    before = snapshot(registry.path)
    again = registry.register(exports(0), "digits", ["owner=bob"])
    assert (again.version, again.created, again.path) == (1, False, first.path)
    assert snapshot(registry.path) == before  # nothing stored, no event
    # Stored by content hash, verified, and byte-identical to the export.
    manifest = verify_artifact(first.path)
    assert first.path.name == content_hash(manifest)
    for name in (*CONTENT_FILES, MANIFEST):
        assert (first.path / name).read_bytes() == (exports(0) / name).read_bytes()
    assert registry.tags("digits/1") == {"owner": "ana"}
    # The same content under another name is that name's version 1.
    assert registry.register(exports(1), "other").version == 1
    assert registry.names() == ["digits", "other"]


def test_references_resolve_to_versions_and_follow_alias_moves(tmp_path, exports):
    registry = Registry(tmp_path / "reg", clock=Clock())
    paths = [registry.register(exports(i), "digits").path for i in range(3)]
    assert registry.resolve("digits") == paths[2]  # plain NAME: the latest
    assert registry.resolve("digits/1") == paths[0]
    assert registry.set_alias("digits", "production", 1) is None
    assert registry.set_alias("digits", "staging", "3") is None
    assert registry.resolve("digits@production") == paths[0]
    assert registry.set_alias("digits", "production", 2) == 1
    assert registry.resolve("digits@production") == paths[1]
    assert registry.aliases("digits") == {"production": 2, "staging": 3}
    assert registry.remove_alias("digits", "staging") == 3
    with pytest.raises(UserError, match=r"no alias 'staging'; its aliases are production\."):
        registry.resolve("digits@staging")
    files = snapshot(paths[0])
    registry.tag("digits/1", ["k=v"])
    assert snapshot(paths[0]) == files  # tags and aliases never touch an artifact


def test_tags_are_set_changed_and_removed_as_events(tmp_path, exports):
    registry = Registry(tmp_path / "reg", clock=Clock())
    registry.register(exports(0), "digits", ["owner=ana", "ticket=7"])
    assert registry.tag("digits/1", ["owner=bob", "reviewed=yes"]) == {
        "owner": "bob",
        "reviewed": "yes",
        "ticket": "7",
    }
    assert registry.tag("digits", ["ticket="]) == {"owner": "bob", "reviewed": "yes"}
    tag_events = [e for e in registry.events("digits") if e["action"] == "tag"]
    assert [e["tags"] for e in tag_events] == [
        {"owner": "bob", "reviewed": "yes"},
        {"ticket": None},
    ]


# ------------------------------------------------------------------ the command


def test_the_command_registers_aliases_shows_lists_and_diffs(tmp_path, exports):
    reg = str(tmp_path / "reg")
    out = ok(
        registry_cli(
            "register",
            str(exports(0)),
            "--name",
            "digits",
            "--tag",
            "owner=ana",
            "--registry",
            reg,
            cwd=tmp_path,
        )
    )
    assert "registered digits version 1" in out
    env = {**os.environ, "JAXFW_REGISTRY": reg}  # the variable instead of --registry
    out = ok(registry_cli("register", str(exports(2)), "--name", "digits", cwd=tmp_path, env=env))
    assert "registered digits version 2" in out
    out = ok(registry_cli("register", str(exports(0)), "--name", "digits", cwd=tmp_path, env=env))
    assert "digits version 1 already holds this content" in out
    out = ok(registry_cli("alias", "set", "digits", "production", "2", cwd=tmp_path, env=env))
    assert "digits@production -> version 2 (was unset)" in out

    shown = json.loads(
        ok(registry_cli("show", "digits@production", "--json", cwd=tmp_path, env=env))
    )
    assert shown["version"] == 2 and shown["aliases"] == ["production"]
    assert shown["metrics"]["test/accuracy"] == pytest.approx(0.92)
    assert shown["lineage"]["run_id"] == "run-2" and shown["lineage"]["run_dir"] == "/runs/2"
    assert shown["lineage"]["git_commit"] == "abc0002"
    assert shown["lineage"]["data_fingerprint"] == "fp-b"
    assert shown["lineage"]["exported_at"] == "2026-03-01T10:00:00Z"
    text = ok(registry_cli("show", "digits/1", cwd=tmp_path, env=env))
    assert "run-0" in text and "owner=ana" in text and "test/accuracy" in text

    listed = json.loads(ok(registry_cli("list", "--json", cwd=tmp_path, env=env)))
    assert listed == [{"name": "digits", "latest": 2, "versions": 2, "aliases": {"production": 2}}]
    versions = json.loads(ok(registry_cli("list", "digits", "--json", cwd=tmp_path, env=env)))
    assert [v["version"] for v in versions] == [1, 2]

    diff = json.loads(ok(registry_cli("diff", "digits", "1", "2", "--json", cwd=tmp_path, env=env)))
    text = ok(registry_cli("diff", "digits", "1", "production", cwd=tmp_path, env=env))
    assert "optimizer.lr: 0.001 -> 0.003" in text and "data fingerprint  different" in text
    assert diff["parameter_count"] == {"a": 1000, "b": 1002, "delta": 2}
    out = ok(registry_cli("tag", "digits/2", "reviewed=yes", cwd=tmp_path, env=env))
    assert "digits/2 tags: reviewed=yes" in out
    out = ok(registry_cli("alias", "rm", "digits", "production", cwd=tmp_path, env=env))
    assert "removed digits@production (was version 2)" in out
    events = json.loads(ok(registry_cli("events", "digits", "--json", cwd=tmp_path, env=env)))
    assert [e["action"] for e in events] == ["register", "register", "alias-set", "tag", "alias-rm"]


def test_diff_shows_metric_deltas_config_paths_data_and_size(tmp_path, exports):
    registry = Registry(tmp_path / "reg", clock=Clock())
    registry.register(exports(0), "digits")
    changed = {
        "optimizer": {"name": "sgd", "lr": 0.001},
        "model": {"width": 64},
        "data": {"noise": 0.1},
    }
    registry.register(
        exports(1, config=changed, metrics={"test/accuracy": 0.95, "test/f1": 0.9}), "digits"
    )
    registry.register(exports(3), "digits")
    report = registry.diff("digits", 1, 2)
    metrics = {row["name"]: row for row in report["metrics"]}
    assert metrics["test/accuracy"]["delta"] == pytest.approx(0.05)
    assert metrics["test/loss"]["b"] is None and metrics["test/loss"]["delta"] is None
    assert metrics["test/f1"]["a"] is None
    config = {row["key"]: (row["change"], row["a"], row["b"]) for row in report["config"]}
    assert config == {
        "optimizer.name": ("changed", "adam", "sgd"),
        "data.noise": ("added", None, 0.1),
        "trainer.steps": ("removed", 100, None),
    }
    assert report["data_fingerprint"]["same"] is True
    assert registry.diff("digits", 1, 3)["data_fingerprint"] == {
        "a": "fp-a",
        "b": "fp-b",
        "same": False,
    }


def test_events_record_every_change_in_order_with_who_and_what(tmp_path, exports):
    clock = Clock()
    registry = Registry(tmp_path / "reg", clock=clock)
    registry.register(exports(0), "digits")
    clock.now += timedelta(hours=1)
    registry.register(exports(1), "digits")
    clock.now += timedelta(hours=1)
    registry.set_alias("digits", "production", 1)
    registry.set_alias("digits", "production", 2)
    registry.tag("digits/2", {"approved": "yes"})
    registry.remove_alias("digits", "production")
    events = registry.events("digits")
    assert [(e["action"], e["version"], e.get("alias"), e.get("previous")) for e in events] == [
        ("register", 1, None, None),
        ("register", 2, None, None),
        ("alias-set", 1, "production", None),
        ("alias-set", 2, "production", 1),
        ("tag", 2, None, None),
        ("alias-rm", 2, "production", 2),
    ]
    assert events[0]["time"] == "2026-03-02T09:00:00.000000Z"
    assert events[2]["time"] == "2026-03-02T11:00:00.000000Z"
    assert all("@" in e["user"] for e in events)
    assert events[0]["content_hash"] == registry.show("digits/1")["content_hash"]


# ------------------------------------------------------------------ delivery statistics


def _history(
    tmp_path, exports, moves: list[tuple[float, int]], now_days: float, start: datetime = T0
) -> dict:
    """Register 3 versions, move production at start + days to each version, stats at now."""
    clock = Clock(start)
    registry = Registry(tmp_path / "reg", clock=clock)
    for index in range(3):
        registry.register(exports(index), "digits")
    for days, version in moves:
        clock.now = start + timedelta(days=days)
        registry.set_alias("digits", "production", version)
    clock.now = start + timedelta(days=now_days)
    return registry.stats("digits")


def test_stats_count_deploys_per_week_lead_time_and_rollbacks(tmp_path, exports):
    # Versions' runs end at T0 - 1 day. Day 0: v1, day 1: v2 (same version again: no
    # deploy), day 15: v3, day 16: back to v2 (a rollback), day 80: v3 again.
    report = _history(
        tmp_path, exports, [(0, 1), (1, 2), (1.5, 2), (15, 3), (16, 2), (80, 3)], now_days=83.5
    )
    assert report["deploys_per_week"] == [2, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert report["deploys"] == 5 and report["rollbacks"] == 1
    assert report["change_failure_rate"] == pytest.approx(0.2)
    leads = [d["lead_time_s"] / 86400 for d in report["per_deploy"]]
    assert leads == pytest.approx([1, 2, 16, 17, 81])
    # Median over first deploys that are not rollbacks: v1 (1 day), v2 (2), v3 (16).
    assert report["lead_time_median_s"] == pytest.approx(2 * 86400)
    assert report["frequency"] == "monthly"  # 5 in 84 days: >= 1 per 30 days
    # The window ends now: a week later, the first week's two deploys have left it.
    assert _history(tmp_path / "b", exports, [(0, 1), (1, 2)], now_days=90)["deploys"] == 0


@pytest.mark.parametrize(
    ("deploys", "expected"),
    [
        (84, "daily"),
        (83, "weekly"),
        (12, "weekly"),
        (11, "monthly"),
        (3, "monthly"),
        (2, "yearly"),
        (0, "yearly"),
    ],
)
def test_frequency_buckets_over_twelve_weeks(deploys, expected):
    assert bucket(deploys, 84) == expected


def test_daily_weekly_and_yearly_histories_and_their_rollbacks(tmp_path, exports):
    moves = [(day, 1 + day % 2) for day in range(84)]  # 1, 2, 1, 2, ... one a day
    report = _history(tmp_path, exports, moves, now_days=83.9)
    assert report["frequency"] == "daily" and report["deploys"] == 84
    assert report["deploys_per_week"] == [7] * 12
    # Every move back to version 1 after the first deploy is a rollback: days 2, 4, ..., 82.
    assert report["rollbacks"] == 41 and report["change_failure_rate"] == pytest.approx(41 / 84)
    weekly = _history(tmp_path / "w", exports, [(7 * w, 1 + w % 3) for w in range(12)], 83.9)
    assert weekly["frequency"] == "weekly" and weekly["deploys_per_week"] == [1] * 12
    yearly = _history(tmp_path / "y", exports, [(10, 1), (50, 2)], 83.9)
    assert yearly["frequency"] == "yearly" and yearly["change_failure_rate"] == 0


def test_stats_command_reads_the_chosen_alias(tmp_path, exports):
    # The command's clock is the real one: the moves are 3 and 2 days before now.
    _history(tmp_path, exports, [(0, 1), (1, 2)], 3, start=datetime.now(UTC) - timedelta(days=3))
    reg = str(tmp_path / "reg")
    report = json.loads(
        ok(registry_cli("stats", "digits", "--json", "--registry", reg, cwd=tmp_path))
    )
    assert report["alias"] == "production" and report["deploys"] == 2  # all within 12 weeks
    text = ok(
        registry_cli("stats", "digits", "--alias", "staging", "--registry", reg, cwd=tmp_path)
    )
    assert "deploys              0" in text


# ------------------------------------------------------------------ concurrency and crashes


def test_eight_processes_registering_at_once_get_eight_versions(tmp_path):
    sources = [make_artifact(tmp_path / f"e{i}", i) for i in range(8)]
    reg = tmp_path / "reg"
    # A ninth process registers the first content again: it must get that same version.
    procs = [
        subprocess.Popen(
            cli_command("register", str(s), "--name", "digits", "--registry", str(reg), "--json"),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in [*sources, sources[0]]
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]
    assert sorted(r["version"] for r in results if r["created"]) == list(range(1, 9))
    assert results[0]["version"] == results[8]["version"]
    assert results[0]["path"] == results[8]["path"]
    registry = Registry(reg)
    for source, result in zip(sources, results, strict=False):  # the content it registered
        digest = content_hash(verify_artifact(source))
        stored = registry.resolve(f"digits/{result['version']}")
        assert content_hash(verify_artifact(stored)) == digest == Path(result["path"]).name
    assert sorted(e["version"] for e in registry.events("digits")) == list(range(1, 9))
    assert [p.name for p in (reg / ".staging").iterdir()] == [".lock"]  # nothing left over
    assert len(list((reg / "models/digits/artifacts").iterdir())) == 8


def _kill_at(point: str, source: Path, reg: Path, cwd: Path) -> None:
    """Run `register` until the test pause `point`, then SIGKILL it."""
    proc = subprocess.Popen(
        cli_command("register", str(source), "--name", "digits", "--registry", str(reg)),
        cwd=cwd,
        env={**os.environ, PAUSE_ENV: point},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()  # blocks until the pause is announced
        assert f"test pause at {point}" in line, line + proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=30)


def test_a_register_killed_after_copying_leaves_no_visible_version(tmp_path, exports):
    reg = tmp_path / "reg"
    _kill_at("after-copy", exports(0), reg, tmp_path)
    staged = [p for p in (reg / ".staging").iterdir() if p.name != ".lock"]
    assert len(staged) == 2  # the killed copy and its lock file are left behind
    registry = Registry(reg)
    assert registry.names() == []
    assert "no models" in ok(registry_cli("list", "--registry", str(reg), cwd=tmp_path))
    with pytest.raises(UserError, match="holds no models yet"):
        registry.resolve("digits")
    # The next register cleans the leftovers and gets version 1.
    assert registry.register(exports(1), "digits").version == 1
    assert [p.name for p in (reg / ".staging").iterdir()] == [".lock"]


def test_a_register_killed_after_claiming_a_number_leaves_the_old_versions(tmp_path, exports):
    reg = tmp_path / "reg"
    registry = Registry(reg)
    first = registry.register(exports(0), "digits")
    _kill_at("after-claim", exports(1), reg, tmp_path)
    assert (reg / "models/digits/versions/2.json").read_bytes() == b""  # claimed, never filled
    assert len(list((reg / "models/digits/artifacts").iterdir())) == 2  # one nobody names
    assert registry.resolve("digits") == first.path
    assert [v["version"] for v in registry.versions("digits")] == [1]
    with pytest.raises(UserError, match="has no version 2; its versions are 1"):
        registry.resolve("digits/2")
    # The next register removes the empty claim and the orphan, and takes number 2.
    again = registry.register(exports(2), "digits")
    assert again.version == 2 and again.path.name == content_hash(verify_artifact(exports(2)))
    assert sorted(p.name for p in (reg / "models/digits/artifacts").iterdir()) == sorted(
        [first.path.name, again.path.name]
    )
    assert [e["version"] for e in registry.events("digits")] == [1, 2]


# ------------------------------------------------------------------ bad input


def test_every_bad_input_is_one_sentence_exit_2_and_the_registry_unchanged(tmp_path, exports):
    reg = tmp_path / "reg"
    registry = Registry(reg)
    registry.register(exports(0), "digits")
    registry.register(exports(1), "digits")
    registry.register(exports(2), "other")
    registry.set_alias("digits", "production", 2)
    tampered = make_artifact(tmp_path / "tampered", 7)
    data = bytearray((tampered / MODEL).read_bytes())
    data[3] ^= 1  # one byte changed after export
    (tampered / MODEL).write_bytes(bytes(data))
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    r = ["--registry", str(reg)]
    cases = [
        (
            ["register", str(tmp_path / "empty"), "--name", "digits", *r],
            "is not a jaxfw artifact: it has no manifest.json",
        ),
        (["register", str(tmp_path / "missing"), "--name", "digits", *r], "is not a directory"),
        (["register", str(tampered), "--name", "digits", *r], "changed after export"),
        (["register", str(exports(3)), "--name", "../up", *r], "Model name '../up' is not allowed"),
        (
            ["register", str(exports(3)), "--name", "digits", "--tag", "owner", *r],
            "Tag 'owner' is not key=value",
        ),
        (["register", str(exports(3)), *r], "The following arguments are required: --name"),
        (["show", "fraud", *r], "Model 'fraud' is not in the registry"),
        (["show", "fraud", *r], "its models are digits, other."),
        (["show", "digits/9", *r], "Model 'digits' has no version 9; its versions are 1-2."),
        (["show", "digits/x", *r], "Version 'x' of model 'digits' is not a version number"),
        (["show", "digits@prod", *r], "no alias 'prod'; its aliases are production."),
        (["show", "other@production", *r], "no alias 'production'; it has no aliases yet"),
        (["alias", "set", "digits", "production", "5", *r], "has no version 5"),
        (["alias", "set", "digits", "9lives", "1", *r], "Alias '9lives' is not allowed"),
        (["alias", "rm", "digits", "staging", *r], "no alias 'staging'; its aliases are"),
        (["diff", "digits", "1", "3", *r], "has no version 3; its versions are 1-2."),
        (["tag", "digits/1", "=v", *r], "Tag key '' is not allowed"),
        (["tag", "digits/4", "k=v", *r], "has no version 4"),
        (["events", "nope", *r], "Model 'nope' is not in the registry"),
        (["stats", "digits", "--alias", "-x", *r], "expected one argument"),
        (["promote", "digits", *r], "invalid choice: 'promote'"),
        (
            ["register", str(exports(3)), "--name", "d", "--registry", str(tmp_path / "a-file/r")],
            "Cannot write to the registry",
        ),
        (
            ["register", str(exports(3)), "--name", "d", "--registry", str(tmp_path / "a-file")],
            "is a file, not a folder",
        ),
        (
            ["register", str(exports(3)), "--name", "d", "--registry", str(tmp_path / "foreign")],
            "is not a jaxfw registry",
        ),
    ]
    before, foreign = snapshot(reg), snapshot(tmp_path / "foreign")
    with ThreadPoolExecutor(4) as pool:  # independent commands; the subprocesses run in parallel
        procs = list(pool.map(lambda case: registry_cli(*case[0], cwd=tmp_path), cases))
    failures = []
    for (args, expected), proc in zip(cases, procs, strict=True):
        try:
            assert expected in one_error(proc), (expected, proc.stderr)
        except AssertionError as exc:
            failures.append(f"{args}: {exc}")
    assert not failures, "\n".join(failures)
    assert snapshot(reg) == before and snapshot(tmp_path / "foreign") == foreign
    assert (tmp_path / "a-file").read_text() == "x"

    with read_only(reg) as made_read_only:
        if not made_read_only:
            pytest.skip("this machine refuses a read-only bind mount")
        for args in (
            ["register", str(exports(3)), "--name", "digits", *r],
            ["alias", "set", "digits", "production", "1", *r],
            ["tag", "digits/1", "k=v", *r],
        ):
            line = one_error(registry_cli(*args, cwd=tmp_path))
            assert "Cannot write to the registry" in line and "Read-only" in line, line
        assert "digits" in ok(registry_cli("list", *r, cwd=tmp_path))  # reading still works
    assert snapshot(reg) == before


def test_python_api_mistakes_are_user_errors(tmp_path, exports, monkeypatch):
    monkeypatch.delenv("JAXFW_REGISTRY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Registry().path == Path("registry")  # the default: ./registry
    registry = Registry(tmp_path / "reg")
    with pytest.raises(UserError, match="holds no models yet"):
        registry.show("digits")
    registry.register(exports(0), "digits")
    with pytest.raises(UserError, match="not a model reference"):
        registry.resolve("di gits")
    with pytest.raises(UserError, match="No tags given"):
        registry.tag("digits/1", [])
    with pytest.raises(UserError, match="one line of at most"):
        registry.register(exports(1), "digits", {"note": "a\nb"})
    assert not (tmp_path / "reg" / "models" / "digits" / "versions" / "2.json").exists()


def test_the_registry_imports_nothing_heavy(tmp_path):
    """A serving process imports it to resolve `name@production`: no JAX, NumPy, Flax, ..."""
    code = (
        "import sys, jaxfw.registry, jaxfw.cli.registry\n"
        "from jaxfw.errors import UserError\n"
        "try:\n"
        "    jaxfw.registry.Registry(sys.argv[1]).load('digits@production')\n"
        "except UserError as exc:\n"
        "    print(exc)\n"
        "heavy = ('jax', 'jaxlib', 'numpy', 'flax', 'optax', 'orbax', 'grain', 'hydra')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "reg")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == [
        f"Model 'digits' is not in the registry '{tmp_path / 'reg'}', which holds no models "
        "yet; register one with jaxfw-registry register EXPORT_DIR --name NAME.",
        "[]",
    ], proc.stdout
    assert time.monotonic() - start < 30
