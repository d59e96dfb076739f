"""The data report (`data_report.json` in a run) and the checks `data.validation` enforces.

`data_report(bundle)` describes what was loaded: rows per split, per column the missing
(null/NaN) and infinite values per split and whether it is constant in train, class balance
(classification) or target statistics (regression) per split, exact duplicate rows within
train, and rows of val/test identical to a train row (leakage). `findings` turns that into
one-line messages with a severity:

error   -- the results would be wrong or misleading: leakage (val/test rows identical to a
           train row), rows without a target value (left out), a class with no train rows.
warning -- worth a look, but training is sound: constant columns, duplicate train rows,
           missing or infinite feature values (imputed), categories unseen in train,
           categorical columns cut to data.max_categories.

`check_findings(report, mode)` applies `data.validation`: "error" raises a UserError for the
first error finding, "warn" returns every finding, "off" returns none.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxfw.data.rowhash import array_row_hashes, table_row_hashes
from jaxfw.data.source_settings import VALIDATION_MODES
from jaxfw.data.tally import ROLES, Moments, TargetTally, ValueCounts, finite_values, role_masks
from jaxfw.errors import UserError

if TYPE_CHECKING:
    from jaxfw.data.bundle import DataBundle
    from jaxfw.data.table_read import ColumnPlan

FORMAT = "jaxfw.data_report/v1"
_MAX_ARRAY_COLUMNS = 4096  # wider array inputs are reported as a whole, not per column


def _by_role(counts: list[int]) -> dict[str, int]:
    return {role: int(count) for role, count in zip(ROLES, counts, strict=True)}


class TableReportBuilder:
    """Accumulates report statistics chunk by chunk over a prepared table."""

    def __init__(self, plan: ColumnPlan, check_rows: bool = True) -> None:
        self.plan = plan
        self.rows = [0, 0, 0]
        self.missing_targets = 0
        self.missing = {name: [0, 0, 0] for name in plan.features}
        self.infinite = {name: [0, 0, 0] for name in plan.features if plan.is_numeric(name)}
        self.train_range = {name: Moments() for name in self.infinite}
        self.values = {
            name: [ValueCounts() for _ in ROLES]
            for name in plan.features
            if not plan.is_numeric(name)
        }
        self.hashes: list[list[np.ndarray]] | None = [[], [], []] if check_rows else None

    def update(self, chunk: pa.Table, roles: np.ndarray, missing_targets: int = 0) -> None:
        """Add a prepared chunk; `roles` holds 0/1/2 per row, -1 for rows left out."""
        self.missing_targets += missing_targets
        masks = role_masks(roles)
        for role, mask in masks:
            self.rows[role] += int(mask.sum())
        for name in self.plan.features:
            column = chunk.column(name)
            if name in self.infinite:
                values, finite = finite_values(column)
                for role, mask in masks:
                    self.missing[name][role] += int(np.isnan(values[mask]).sum())
                    self.infinite[name][role] += int(np.isinf(values[mask]).sum())
                self.train_range[name].update(values[(roles == 0) & finite])
            else:
                for role, mask in masks:
                    chosen = pc.filter(column, pa.array(mask))
                    self.missing[name][role] += chosen.null_count
                    self.values[name][role].update(chosen)
        if self.hashes is not None:
            hashes = table_row_hashes(chunk, [*self.plan.features, self.plan.target])
            for role, mask in masks:
                self.hashes[role].append(hashes[mask])

    def finish(
        self,
        *,
        name: str,
        fingerprint: str | None,
        task_kind: str,
        tally: TargetTally,
        truncated: dict[str, int] | None = None,
        max_categories: int | None = None,
    ) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        for column in self.plan.features:
            entry: dict[str, Any] = {
                "kind": "numeric" if column in self.infinite else "categorical",
                "missing": _by_role(self.missing[column]),
            }
            if column in self.infinite:
                span = self.train_range[column]
                entry["infinite"] = _by_role(self.infinite[column])
                entry["constant_in_train"] = span.count == 0 or span.low == span.high
            else:
                train = self.values[column][0]
                entry["categories_in_train"] = None if train.overflow else len(train.counts)
                entry["constant_in_train"] = not train.overflow and len(train.counts) <= 1
                entry["unseen_categories"] = {
                    ROLES[role]: _unseen(train, self.values[column][role]) for role in (1, 2)
                }
                if truncated and column in truncated:
                    entry["categories_kept"] = max_categories
            columns[column] = entry
        report = _base(name, fingerprint, task_kind, self.rows)
        report["target"] = self.plan.target
        report["missing_targets"] = self.missing_targets
        report["columns"] = columns
        report.update(_target_section(task_kind, tally))
        report.update(_row_checks(self.hashes))
        report["findings"] = findings(report)
        return report


def _unseen(train: ValueCounts, other: ValueCounts) -> int | None:
    if train.overflow or other.overflow:
        return None
    return int(sum(n for value, n in other.counts.items() if value not in train.counts))


def _base(name: str, fingerprint: str | None, task_kind: str, rows: list[int]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "name": name,
        "fingerprint": fingerprint,
        "task_kind": task_kind,
        "rows": _by_role(rows),
    }


def _target_section(task_kind: str, tally: TargetTally) -> dict[str, Any]:
    if task_kind == "classification":
        classes = tally.distinct()
        return {
            "class_balance": {
                role: {str(c): int(tally.counts[i].counts.get(c, 0)) for c in classes}
                for i, role in enumerate(ROLES)
            }
        }
    return {"target_stats": {role: tally.moments[i].summary() for i, role in enumerate(ROLES)}}


def _row_checks(hashes: list[list[np.ndarray]] | None) -> dict[str, Any]:
    """Duplicates within train and val/test rows identical to a train row (None: skipped)."""
    if hashes is None:
        return {"duplicates": None, "leakage": None}
    joined = [np.concatenate(h) if h else np.zeros(0, np.uint64) for h in hashes]
    train = np.unique(joined[0])
    return {
        "duplicates": {"train": int(len(joined[0]) - len(train))},
        "leakage": {
            ROLES[role]: int(np.isin(joined[role], train).sum()) for role in (1, 2)
        },
    }


def array_report(bundle: DataBundle) -> dict[str, Any]:
    """The report of an array bundle (bundled datasets, .npz, text windows)."""
    splits = [getattr(bundle, role) for role in ROLES]
    report = _base(bundle.name, bundle.fingerprint, bundle.task_kind, [len(s) for s in splits])
    if bundle.task_kind == "lm":
        report["tokens"] = _by_role([s.targets.size for s in splits])
        report["findings"] = findings(report)
        return report
    train_inputs = splits[0].inputs.reshape(len(splits[0]), -1)
    if train_inputs.shape[1] <= _MAX_ARRAY_COLUMNS:
        constant = train_inputs.min(axis=0) == train_inputs.max(axis=0)
        report["columns"] = {
            f"x{i}": {"kind": "numeric", "constant_in_train": bool(c)} for i, c in enumerate(constant)
        }
    if bundle.task_kind == "classification":
        report["class_balance"] = {
            role: {str(c): n for c, n in enumerate(s.class_counts(bundle.num_classes))}
            for role, s in zip(ROLES, splits, strict=True)
        }
    hashes = [[array_row_hashes(s.inputs, s.targets)] for s in splits]
    report.update(_row_checks(hashes))
    report["findings"] = findings(report)
    return report


def data_report(
    source: Any,
    splits: dict[str, np.ndarray] | None = None,
    *,
    target: str | None = None,
    features: list[str] | None = None,
    name: str = "table",
) -> dict[str, Any]:
    """The JSON-ready data report of a DataBundle, or of a raw pyarrow table split by
    `splits` ({"train": row indices, "val": ..., "test": ...}) with target column `target`."""
    from jaxfw.data.bundle import DataBundle

    if isinstance(source, DataBundle):
        return copy.deepcopy(source.report) if source.report is not None else array_report(source)
    if isinstance(source, pa.Table):
        if splits is None or target is None:
            raise TypeError("data_report(table, splits, target=...) needs splits and a target.")
        return _raw_table_report(source, splits, target, features, name)
    raise TypeError(f"data_report takes a DataBundle or a pyarrow Table, not {type(source).__name__}.")


def _raw_table_report(
    table: pa.Table,
    splits: dict[str, np.ndarray],
    target: str,
    features: list[str] | None,
    name: str,
) -> dict[str, Any]:
    from jaxfw.data.source_settings import TableSettings
    from jaxfw.data.table_read import TableFile, plan_columns, prepare_chunk
    from jaxfw.data.tally import infer_task_kind, valid_targets

    file = TableFile(Path(name), name, "table")
    settings = TableSettings(target=target, features=tuple(features) if features else None)
    plan = plan_columns(table.schema, settings, file)
    prepared = prepare_chunk(table, plan, file, 0)
    roles = np.full(table.num_rows, -1, np.int8)
    for role, rows in splits.items():
        roles[np.asarray(rows, dtype=np.int64)] = ROLES.index(role)
    valid = valid_targets(prepared.column(target))
    missing = int((~valid & (roles >= 0)).sum())
    roles[~valid] = -1
    tally = TargetTally(numeric=plan.target_type != "string")
    tally.update(prepared.column(target), roles)
    builder = TableReportBuilder(plan)
    builder.update(prepared, roles, missing)
    kind = infer_task_kind("auto", plan.target_type, None if tally.overflow else len(tally.distinct()))
    return builder.finish(name=name, fingerprint=None, task_kind=kind, tally=tally)


# --- findings ------------------------------------------------------------------------------


def _finding(severity: str, check: str, message: str) -> dict[str, str]:
    return {"severity": severity, "check": check, "message": message}


def _rows(n: int) -> str:
    return "1 row has" if n == 1 else f"{n} rows have"


def _split_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{role} {n}" for role, n in counts.items() if n)


def findings(report: dict[str, Any]) -> list[dict[str, str]]:
    """One-line findings from a report's statistics, errors first."""
    out: list[dict[str, str]] = []
    rows = report["rows"]
    target = report.get("target", "target")
    if report.get("missing_targets"):
        out.append(
            _finding(
                "error",
                "missing_target",
                f"{_rows(report['missing_targets'])} no value in target column {target!r} "
                "and were left out; fill in or remove them.",
            )
        )
    for role, count in (report.get("leakage") or {}).items():
        if count:
            out.append(
                _finding(
                    "error",
                    "leakage",
                    f"{count} of {rows[role]} {role} rows are identical to a train row "
                    f"(train/{role} leakage); remove duplicate rows before splitting.",
                )
            )
    for value, count in (report.get("class_balance") or {}).get("train", {}).items():
        if count == 0:
            others = {r: report["class_balance"][r][value] for r in ("val", "test")}
            out.append(
                _finding(
                    "error",
                    "class_missing_in_train",
                    f"Class {value!r} has no train rows ({_split_counts(others)}), so the "
                    "model cannot learn it.",
                )
            )
    duplicates = (report.get("duplicates") or {}).get("train", 0)
    if duplicates:
        out.append(
            _finding(
                "warning",
                "duplicates",
                f"{duplicates} of {rows['train']} train rows repeat an earlier train row.",
            )
        )
    for name, column in (report.get("columns") or {}).items():
        out.extend(_column_findings(name, column))
    return out


def _column_findings(name: str, column: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    numeric = column["kind"] == "numeric"
    if column.get("constant_in_train"):
        out.append(
            _finding(
                "warning",
                "constant_column",
                f"Column {name!r} is constant in the train split, so it carries no information.",
            )
        )
    missing = column.get("missing") or {}
    if sum(missing.values()):
        fill = "imputed with the train mean" if numeric else "encoded as an unknown category"
        out.append(
            _finding(
                "warning",
                "missing_values",
                f"Column {name!r} has {sum(missing.values())} missing values "
                f"({_split_counts(missing)}), {fill}.",
            )
        )
    infinite = column.get("infinite") or {}
    if sum(infinite.values()):
        out.append(
            _finding(
                "warning",
                "infinite_values",
                f"Column {name!r} has {sum(infinite.values())} infinite values "
                f"({_split_counts(infinite)}), treated as missing.",
            )
        )
    unseen = {r: n for r, n in (column.get("unseen_categories") or {}).items() if n}
    if unseen:
        out.append(
            _finding(
                "warning",
                "unseen_categories",
                f"Column {name!r} has {sum(unseen.values())} rows with a category not seen in "
                f"train ({_split_counts(unseen)}), encoded as unknown.",
            )
        )
    if column.get("categories_kept"):
        seen = column.get("categories_in_train")
        seen_text = f"{seen} categories" if seen is not None else "too many categories to count"
        out.append(
            _finding(
                "warning",
                "many_categories",
                f"Column {name!r} has {seen_text} in train; only the "
                f"{column['categories_kept']} most frequent are one-hot encoded "
                "(data.max_categories), the rest count as unknown.",
            )
        )
    return out


def format_finding(finding: dict[str, str]) -> str:
    """'error [leakage]: 3 of 40 test rows ...' -- one line for logs."""
    return f"{finding['severity']} [{finding['check']}]: {finding['message']}"


def check_findings(report: dict[str, Any], mode: str) -> list[dict[str, str]]:
    """Apply `data.validation=mode` to a report; returns the findings to show."""
    if mode not in VALIDATION_MODES:
        valid = ", ".join(repr(m) for m in VALIDATION_MODES)
        raise UserError(f"data.validation={mode!r} is not allowed; choose one of {valid}.")
    if mode == "off":
        return []
    found = list(report.get("findings", []))
    errors = [f for f in found if f["severity"] == "error"]
    if mode == "error" and errors:
        message = errors[0]["message"].rstrip(".")
        more = f" and {len(errors) - 1} more errors" if len(errors) > 1 else ""
        raise UserError(
            f"Data validation failed: {message}{more} (see data_report.json, or set "
            "data.validation=warn to train anyway)."
        )
    return found


def validate_data(bundle: DataBundle, cfg: Any, path: str | Path | None = None) -> dict[str, Any]:
    """The bundle's report with `data.validation` (from the `data` config `cfg`) applied.

    The report is written as JSON to `path` first (the run's data_report.json), so it is there
    to read even when an error finding then stops the run with a UserError.
    """
    from jaxfw.data.source_settings import validation_mode

    mode = validation_mode(cfg)
    report = data_report(bundle)
    report["validation"] = mode
    if path is not None:
        Path(path).write_text(json.dumps(report, indent=1, default=_jsonable) + "\n")
    check_findings(report, mode)
    return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
