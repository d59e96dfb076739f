"""The data report (`data_report.json` in a run): what was loaded, per split and column.

`data_report(bundle)` describes rows per split, per column the missing (null/NaN) and
infinite values per split and whether it is constant in train, class balance
(classification) or target statistics (regression) per split, exact duplicate rows within
train, and val/test rows identical to a train row (leakage); its `findings` (see
quality/findings.py) are one-line messages with a severity, which `data.validation` acts on.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jaxfw.data.options import TableOptions, validation_mode
from jaxfw.data.quality.findings import check_findings, findings
from jaxfw.data.quality.rowhash import array_row_hashes, table_row_hashes
from jaxfw.data.quality.tally import TargetTally, infer_task_kind, role_masks, valid_targets
from jaxfw.data.sources.tables.columns import ColumnPlan, plan_columns, prepare_chunk
from jaxfw.data.sources.tables.files import TableFile
from jaxfw.data.stats import Moments, ValueCounts, finite_values
from jaxfw.data.types import SPLIT_NAMES, DataBundle
from jaxfw.json_values import to_jsonable

FORMAT = "jaxfw.data_report/v1"
_MAX_ARRAY_COLUMNS = 4096  # wider array inputs are reported as a whole, not per column


def _by_role(counts: list[int]) -> dict[str, int]:
    return {role: int(count) for role, count in zip(SPLIT_NAMES, counts, strict=True)}


class TableReportBuilder:
    """Accumulates report statistics chunk by chunk over a prepared table."""

    def __init__(self, plan: ColumnPlan, check_rows: bool = True, capacity: int = 0) -> None:
        """`capacity`: an upper bound on the rows to come (0: unknown). With it the train row
        hashes go into one preallocated array, not chunks joined at the end (half the peak)."""
        self.plan = plan
        self.rows = [0, 0, 0]
        self.missing_targets = 0
        self.missing = {name: [0, 0, 0] for name in plan.features}
        self.infinite = {name: [0, 0, 0] for name in plan.features if plan.is_numeric(name)}
        self.train_range = {name: Moments() for name in self.infinite}
        self.values = {
            name: [ValueCounts() for _ in SPLIT_NAMES]
            for name in plan.features
            if not plan.is_numeric(name)
        }
        self.hashes: list[list[np.ndarray]] | None = [[], [], []] if check_rows else None
        self._train_hashes = np.empty(capacity if check_rows else 0, np.uint64)

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
                chosen = hashes[mask]
                start = self.rows[role] - len(chosen)  # rows were counted above
                if role == 0 and self.rows[0] <= len(self._train_hashes):
                    self._train_hashes[start : self.rows[0]] = chosen
                else:
                    self.hashes[role].append(chosen)

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
                    SPLIT_NAMES[role]: _unseen(train, self.values[column][role]) for role in (1, 2)
                }
                if truncated and column in truncated:
                    entry["categories_kept"] = max_categories
            columns[column] = entry
        report = _base(name, fingerprint, task_kind, self.rows)
        report["target"] = self.plan.target
        report["missing_targets"] = self.missing_targets
        report["columns"] = columns
        report.update(_target_section(task_kind, tally))
        if self.hashes is not None and self.rows[0] <= len(self._train_hashes):
            self.hashes[0] = [self._train_hashes[: self.rows[0]]]
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
                for i, role in enumerate(SPLIT_NAMES)
            }
        }
    return {
        "target_stats": {role: tally.moments[i].summary() for i, role in enumerate(SPLIT_NAMES)}
    }


def _row_checks(hashes: list[list[np.ndarray]] | None) -> dict[str, Any]:
    """Duplicates within train and val/test rows identical to a train row (None: skipped).

    Sorting and binary search rather than np.unique/np.isin, whose hash-table path was
    ~10x slower on a million uint64 hashes (numpy 2.4).
    """
    if hashes is None:
        return {"duplicates": None, "leakage": None}
    joined = []
    for parts in hashes:
        if len(parts) == 1:
            joined.append(parts[0])  # sorted in place below: no copy
        else:
            joined.append(np.concatenate(parts) if parts else np.zeros(0, np.uint64))
        parts.clear()  # the chunks' copies go as soon as they are joined
    train = joined[0]
    train.sort()
    leakage = {}
    for role in (1, 2):
        if len(train):
            at = np.minimum(np.searchsorted(train, joined[role]), len(train) - 1)
            leakage[SPLIT_NAMES[role]] = int((train[at] == joined[role]).sum())
        else:
            leakage[SPLIT_NAMES[role]] = 0
    return {
        "duplicates": {"train": int((train[1:] == train[:-1]).sum())},
        "leakage": leakage,
    }


def array_report(bundle: DataBundle) -> dict[str, Any]:
    """The report of an array bundle (bundled datasets, .npz, text windows)."""
    splits = [getattr(bundle, role) for role in SPLIT_NAMES]
    report = _base(bundle.name, bundle.fingerprint, bundle.task_kind, [len(s) for s in splits])
    if bundle.task_kind == "lm":
        report["tokens"] = _by_role([s.targets.size for s in splits])
        report["findings"] = findings(report)
        return report
    train_inputs = splits[0].inputs.reshape(len(splits[0]), -1)
    if train_inputs.shape[1] <= _MAX_ARRAY_COLUMNS:
        constant = train_inputs.min(axis=0) == train_inputs.max(axis=0)
        report["columns"] = {
            f"x{i}": {"kind": "numeric", "constant_in_train": bool(c)}
            for i, c in enumerate(constant)
        }
    if bundle.task_kind == "classification":
        report["class_balance"] = {
            role: {str(c): n for c, n in enumerate(s.class_counts(bundle.num_classes))}
            for role, s in zip(SPLIT_NAMES, splits, strict=True)
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
    if isinstance(source, DataBundle):
        return copy.deepcopy(source.report) if source.report is not None else array_report(source)
    if isinstance(source, pa.Table):
        if splits is None or target is None:
            raise TypeError("data_report(table, splits, target=...) needs splits and a target.")
        return _raw_table_report(source, splits, target, features, name)
    raise TypeError(
        f"data_report takes a DataBundle or a pyarrow Table, not {type(source).__name__}."
    )


def _raw_table_report(
    table: pa.Table,
    splits: dict[str, np.ndarray],
    target: str,
    features: list[str] | None,
    name: str,
) -> dict[str, Any]:
    file = TableFile(Path(name), name, "table")
    options = TableOptions(target=target, features=tuple(features) if features else None)
    plan = plan_columns(table.schema, options, file)
    prepared = prepare_chunk(table, plan, file, 0)
    roles = np.full(table.num_rows, -1, np.int8)
    for role, rows in splits.items():
        roles[np.asarray(rows, dtype=np.int64)] = SPLIT_NAMES.index(role)
    valid = valid_targets(prepared.column(target))
    missing = int((~valid & (roles >= 0)).sum())
    roles[~valid] = -1
    tally = TargetTally(numeric=plan.target_type != "string")
    tally.update(prepared.column(target), roles)
    builder = TableReportBuilder(plan)
    builder.update(prepared, roles, missing)
    kind = infer_task_kind(
        "auto", plan.target_type, None if tally.overflow else len(tally.distinct())
    )
    return builder.finish(name=name, fingerprint=None, task_kind=kind, tally=tally)


def validate_data(bundle: DataBundle, cfg: Any, path: str | Path | None = None) -> dict[str, Any]:
    """The bundle's report with `data.validation` (from the `data` config `cfg`) applied.

    The report is written as JSON to `path` first (the run's data_report.json), so it is there
    to read even when an error finding then stops the run with a UserError.
    """
    mode = validation_mode(cfg)
    report = data_report(bundle)
    report["validation"] = mode
    if path is not None:
        text = json.dumps(to_jsonable(report), indent=1, allow_nan=False)
        Path(path).write_text(text + "\n")
    check_findings(report, mode)
    return report
