"""Findings: a data report's statistics as one-line messages with a severity, and what
`data.validation` does with them.

error   -- the results would be wrong or misleading: leakage (val/test rows identical to a
           train row), rows without a target value (left out), a class with no train rows.
warning -- worth a look, but training is sound: constant columns, duplicate train rows,
           missing or infinite feature values (imputed), categories unseen in train,
           categorical columns cut to data.max_categories, text that is not UTF-8.

`check_findings(report, mode)`: "error" raises a UserError for the first error finding,
"warn" returns every finding, "off" returns none.
"""

from __future__ import annotations

from typing import Any

from jaxfw.data.encoding import iconv_hint
from jaxfw.data.options import VALIDATION_MODES
from jaxfw.errors import UserError


def _finding(severity: str, check: str, message: str) -> dict[str, str]:
    return {"severity": severity, "check": check, "message": message}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
    not_utf8 = report.get("not_utf8")
    if not_utf8:
        more = not_utf8["files"] - 1
        others = f" (and {_count(more, 'other file')})" if more else ""
        out.append(
            _finding(
                "warning",
                "not_utf8",
                f"Text file {not_utf8['file']!r}{others} is not UTF-8 (line {not_utf8['line']}, "
                f"byte offset {not_utf8['offset']}, holds the byte 0x{not_utf8['byte']:02x}); "
                "the model learns its bytes as they are, but generated text is read as UTF-8, "
                f"so {iconv_hint(not_utf8['file'], in_place=True)}.",
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
                f"Column {name!r} has {_count(sum(missing.values()), 'missing value')} "
                f"({_split_counts(missing)}), {fill}.",
            )
        )
    infinite = column.get("infinite") or {}
    if sum(infinite.values()):
        out.append(
            _finding(
                "warning",
                "infinite_values",
                f"Column {name!r} has {_count(sum(infinite.values()), 'infinite value')} "
                f"({_split_counts(infinite)}), treated as missing.",
            )
        )
    unseen = {r: n for r, n in (column.get("unseen_categories") or {}).items() if n}
    if unseen:
        out.append(
            _finding(
                "warning",
                "unseen_categories",
                f"Column {name!r} has {_count(sum(unseen.values()), 'row')} with a category "
                f"not seen in train ({_split_counts(unseen)}), encoded as unknown.",
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
