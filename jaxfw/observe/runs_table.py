"""Run directories -> comparable rows (what `jaxfw-runs` prints); nothing is printed here.

A run directory is any directory holding a run.json, at any depth below the folder
searched: `runs/<name>/<time>/` and sweep jobs `runs/<name>/multirun/<time>/<n>/`.
Its config.yaml (the resolved config) is flattened to dotted keys (`optimizer.lr`);
keys that name where a run lives rather than what it computes (`run_dir`, ...) are left
out, so two runs of one config compare equal.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jaxfw.errors import UserError
from jaxfw.observe.run_info import RUN_FILE

__all__ = [
    "PER_RUN_KEYS",
    "Run",
    "config_diff",
    "differing_keys",
    "filter_runs",
    "find_run_dirs",
    "flatten",
    "load_run",
    "load_runs",
    "lookup",
    "make_rows",
    "parse_where",
    "sort_runs",
]

CONFIG_FILE = "config.yaml"
# Per-run places and display settings: never a difference worth listing.
PER_RUN_KEYS = frozenset({"run_dir", "trainer.resume", "trainer.progress", "trainer.compile_cache"})
PER_RUN_PREFIXES = ("distributed.", "hydra.")
# Final metrics shown per run (run.json's final_metrics).
METRIC_PREFIXES = ("eval/", "test/")
_MISSING = object()


@dataclass
class Run:
    path: Path
    record: dict[str, Any]  # run.json
    config: dict[str, Any]  # flattened config.yaml, per-run keys left out
    label: str = ""  # the path shown: relative to the folder searched
    fields: dict[str, Any] = field(default_factory=dict)  # flattened run.json

    @property
    def metrics(self) -> dict[str, Any]:
        final = self.record.get("final_metrics") or {}
        return {k: v for k, v in final.items() if k.startswith(METRIC_PREFIXES)}


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}`; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened config without the per-run keys."""
    return {
        k: v
        for k, v in flatten(config).items()
        if k not in PER_RUN_KEYS and not k.startswith(PER_RUN_PREFIXES)
    }


def find_run_dirs(root: Path) -> list[Path]:
    """Directories under `root` (or `root` itself) holding a run.json; not below one."""
    found = []
    for current, dirnames, filenames in os.walk(root):
        if RUN_FILE in filenames:
            found.append(Path(current))
            dirnames[:] = []  # a run's own subfolders (checkpoints, eval, ...) hold no runs
        else:
            dirnames.sort()
    return sorted(found)


def load_run(path: Path, root: Path | None = None) -> Run:
    """Reads run.json and config.yaml; OSError/ValueError when either is unreadable."""
    path = Path(path)
    try:
        record = json.loads((path / RUN_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{RUN_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{RUN_FILE} is not a JSON object")
    try:
        config = yaml.safe_load((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{CONFIG_FILE} is not valid YAML") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{CONFIG_FILE} is not a mapping")
    label = str(path)
    if root is not None:
        with contextlib.suppress(ValueError):
            label = str(path.relative_to(root)) if path != root else path.name
    return Run(path, record, config_values(config), label, flatten(record))


def load_runs(root: Path) -> tuple[list[Run], list[str]]:
    """Every readable run under `root`, and one warning per unreadable one."""
    runs, warnings = [], []
    for path in find_run_dirs(root):
        try:
            runs.append(load_run(path, root))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            reason = str(exc).splitlines()[0]
            if isinstance(exc, OSError):
                reason = f"{exc.strerror or exc} ({Path(exc.filename or path).name})"
            warnings.append(f"skipped {path}: {reason}")
    return runs, warnings


def differing_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Config keys whose values are not the same in all `configs` (a key missing in
    some counts as a difference)."""
    if len(configs) < 2:
        return []
    keys = sorted(set().union(*configs))
    return [k for k in keys if len({_canon(c.get(k, _MISSING)) for c in configs}) > 1]


def _canon(value: Any) -> str:
    if value is _MISSING:
        return "\0missing"
    return json.dumps(value, sort_keys=True, default=str)


def _short(text: Any, length: int) -> str | None:
    return None if not text else str(text)[:length]


def make_rows(runs: Sequence[Run]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows): one row per run with the config values that differ between
    `runs`, best and final metrics, the code commit and the data fingerprint."""
    varying = differing_keys([r.config for r in runs])
    metric_names = sorted({m for r in runs for m in r.metrics}, key=_metric_order)
    columns = [
        "run",
        "name",
        "status",
        "start_time",
        "duration_s",
        *varying,
        "best_metric",
        "best",
        *metric_names,
        "commit",
        "data",
    ]
    rows = []
    for run in runs:
        record = run.record
        best = record.get("best") or {}
        git = record.get("git") or {}
        commit = _short(git.get("commit"), 7)
        if commit and git.get("dirty"):
            commit += "+dirty"
        row: dict[str, Any] = {
            "run": run.label,
            "name": record.get("config_name") or run.config.get("name"),
            "status": record.get("status"),
            "start_time": record.get("start_time"),
            "duration_s": record.get("duration_s"),
        }
        row.update({k: run.config.get(k) for k in varying})
        row["best_metric"] = best.get("metric")
        row["best"] = best.get("value")
        row.update({m: run.metrics.get(m) for m in metric_names})
        row["commit"] = commit
        row["data"] = _short(record.get("data_fingerprint"), 12)
        rows.append(row)
    return columns, rows


def _metric_order(name: str) -> tuple[int, str]:
    return (METRIC_PREFIXES.index(name.split("/")[0] + "/"), name)


def lookup(run: Run, key: str) -> Any:
    """`key` in the run: a final metric, a config key, then a run.json field (dotted for
    nested ones: `git.branch`); `_MISSING` when none has it."""
    for source in (run.metrics, run.config, run.fields):
        if key in source:
            return source[key]
    aliases = {"best": ("best.value",), "name": ("config_name",)}
    for alias in aliases.get(key, ()):
        if alias in run.fields:
            return run.fields[alias]
    return _MISSING


def parse_where(spec: str) -> tuple[str, str]:
    key, sep, value = spec.partition("=")
    if not sep or not key.strip():
        raise UserError(
            f"--where '{spec}' is not KEY=VALUE; give e.g. --where optimizer.lr=0.003 "
            "or --where status=completed."
        )
    return key.strip(), value.strip()


def _matches(actual: Any, wanted: str) -> bool:
    if actual is _MISSING:
        return False
    if isinstance(actual, bool) or actual is None:
        return str(actual).lower() == wanted.lower() or (actual is None and wanted == "null")
    if isinstance(actual, int | float):
        try:
            return math.isclose(float(actual), float(wanted), rel_tol=1e-9, abs_tol=0.0)
        except ValueError:
            return False
    if isinstance(actual, list | dict):
        return _canon(actual) == _canon(yaml.safe_load(wanted))
    return str(actual) == wanted


def _known(runs: Iterable[Run], key: str) -> bool:
    return any(lookup(run, key) is not _MISSING for run in runs)


def _examples(runs: Sequence[Run]) -> str:
    keys = ["status", *differing_keys([r.config for r in runs])[:3]]
    keys += sorted({m for r in runs for m in r.metrics}, key=_metric_order)[:2]
    return ", ".join(dict.fromkeys(keys))


def filter_runs(runs: Sequence[Run], wheres: Sequence[str]) -> list[Run]:
    """The runs matching every `KEY=VALUE` (numbers compare as numbers)."""
    kept = list(runs)
    for spec in wheres:
        key, value = parse_where(spec)
        if not _known(runs, key):
            raise UserError(
                f"--where key '{key}' is neither a metric, a config key nor a run.json field "
                f"of any run found; use e.g. {_examples(runs)}."
            )
        kept = [run for run in kept if _matches(lookup(run, key), value)]
    return kept


def sort_runs(runs: Sequence[Run], spec: str) -> list[Run]:
    """`KEY` sorts largest first (accuracy-like), `KEY:asc` smallest first (loss-like);
    runs without the value go last."""
    key, _, order = spec.partition(":")
    if order not in ("", "asc", "desc"):
        raise UserError(
            f"--sort '{spec}' has order '{order}'; use KEY (largest first), KEY:desc or KEY:asc."
        )
    if not _known(runs, key):
        raise UserError(
            f"--sort key '{key}' is not a metric, config key or run.json field of the runs "
            f"listed; use e.g. {_examples(runs)}."
        )
    have = [r for r in runs if lookup(r, key) not in (_MISSING, None)]
    without = [r for r in runs if lookup(r, key) in (_MISSING, None)]

    def sort_key(run: Run) -> tuple[int, Any]:
        value = lookup(run, key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (0, float(value))
        return (1, str(value))

    # Numbers before text either way: sort each kind on its own.
    numbers = [r for r in have if sort_key(r)[0] == 0]
    texts = [r for r in have if sort_key(r)[0] == 1]
    reverse = order != "asc"
    return (
        sorted(numbers, key=sort_key, reverse=reverse)
        + sorted(texts, key=sort_key, reverse=reverse)
        + without
    )


def config_diff(a: Run, b: Run) -> dict[str, Any]:
    """What differs between two runs: config keys, package versions, data, code and
    the final metrics side by side (as plain JSON-able values)."""
    keys = differing_keys([a.config, b.config])
    packages_a = a.record.get("packages") or {}
    packages_b = b.record.get("packages") or {}
    packages = {
        name: [packages_a.get(name), packages_b.get(name)]
        for name in sorted(set(packages_a) | set(packages_b))
        if packages_a.get(name) != packages_b.get(name)
    }
    metrics = sorted(set(a.metrics) | set(b.metrics), key=_metric_order)
    best_a, best_b = a.record.get("best") or {}, b.record.get("best") or {}
    return {
        "runs": [str(a.path), str(b.path)],
        "status": [a.record.get("status"), b.record.get("status")],
        "config": {k: [a.config.get(k), b.config.get(k)] for k in keys},
        "packages": packages,
        "data_fingerprint": [a.record.get("data_fingerprint"), b.record.get("data_fingerprint")],
        "commit": [
            (a.record.get("git") or {}).get("commit"),
            (b.record.get("git") or {}).get("commit"),
        ],
        "best": [best_a.get("value"), best_b.get("value")],
        "best_metric": [best_a.get("metric"), best_b.get("metric")],
        "metrics": {m: [a.metrics.get(m), b.metrics.get(m)] for m in metrics},
    }
