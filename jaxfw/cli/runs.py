"""`jaxfw-runs`: compare run directories side by side (see HELP and docs/concepts.md)."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from jaxfw.errors import UserError
from jaxfw.observe.run_info import RUN_FILE
from jaxfw.observe.runs_table import (
    Run,
    config_diff,
    filter_runs,
    load_run,
    load_runs,
    make_rows,
    sort_runs,
)

PROG = "jaxfw-runs"
FORMATS = ("table", "csv", "json")
HELP = f"""List the runs under DIR (default: runs), one row each: name, status, start time,
duration, the config values that differ between the runs listed, best and final
metrics (eval/*, test/*), the code commit and the data fingerprint.

  {PROG} [DIR] [--where KEY=VALUE ...] [--sort KEY[:asc]] [--format table|csv|json]
  {PROG} diff RUN_A RUN_B [--format table|json]

A run is any folder with a run.json below DIR (runs/<name>/<time>/, sweep jobs
runs/<name>/multirun/<time>/<n>/). KEY is a metric (test/accuracy), a config key
(optimizer.lr) or a run.json field (status, git.branch). --sort KEY lists the largest
value first; KEY:asc the smallest first (for losses: --sort test/loss:asc).

Exit codes: 0 done; 2 a mistake in the command (one line on stderr)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as the one-sentence UserError."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message[:1].upper()}{message[1:]}; see {self.prog} --help.")


def _list_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dir", nargs="?", default="runs", metavar="DIR")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sort", metavar="KEY[:asc]")
    parser.add_argument("--format", default="table", metavar="|".join(FORMATS))
    return parser


def _diff_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=f"{PROG} diff", description="what differs between two runs")
    parser.add_argument("run_a", metavar="RUN_A")
    parser.add_argument("run_b", metavar="RUN_B")
    parser.add_argument("--format", default="table", metavar="table|json")
    return parser


def _check_format(value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UserError(f"--format '{value}' is not one of {', '.join(allowed)}.")


def _cell(value: Any, key: str = "") -> str:
    """A value as table/csv text: floats of metrics to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if key == "duration_s":
            return f"{value:.1f}"
        if "/" in key or key == "best":
            return f"{value:.4f}"
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    if key == "start_time":
        return str(value)[:19].replace("T", " ")
    return str(value)


def _csv_cell(value: Any) -> Any:
    """Full precision for numbers; JSON for lists; empty for missing values."""
    if value is None or isinstance(value, bool | list | dict):
        return _cell(value)
    return value


def _plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _print_table(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str = "") -> None:
    text = _plain_table(columns, rows)
    width = shutil.get_terminal_size().columns
    # A rich table in a terminal wide enough for it (3 more characters a column for its
    # borders); folded into a narrow one it is unreadable, so plain text then (and in pipes).
    if sys.stdout.isatty() and max(map(len, text.splitlines())) + 3 * len(columns) < width:
        # Lazily: rich loads only for a terminal.
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title or None)
        for column in columns:
            table.add_column(column, no_wrap=True)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    else:
        if title:
            print(title)
        print(text)


def list_runs(args: argparse.Namespace) -> None:
    _check_format(args.format, FORMATS)
    root = Path(args.dir)
    if not root.is_dir():
        raise UserError(
            f"'{root}' is not a directory; give the folder holding the runs (default: runs)."
        )
    runs, warnings = load_runs(root)
    for warning in warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    if not runs:
        raise UserError(f"no run directories (folders with {RUN_FILE}) found under '{root}'.")
    listed = filter_runs(runs, args.where)
    if args.sort:
        listed = sort_runs(listed, args.sort)
    columns, rows = make_rows(listed)
    if args.format == "json":
        print(json.dumps(rows, indent=1, default=str))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row[c]) for c in columns])
    else:
        cells = [[_cell(row[c], c) for c in columns] for row in rows]
        _print_table(columns, cells, f"{len(rows)} of {len(runs)} runs under {root}")


def _load_named(path: str) -> Run:
    run_dir = Path(path)
    if not (run_dir / RUN_FILE).is_file():
        raise UserError(
            f"'{path}' is not a run directory (no {RUN_FILE}); give one such as "
            "runs/<name>/<time>/ (jaxfw-runs lists them)."
        )
    try:
        return load_run(run_dir)
    except (OSError, ValueError) as exc:
        raise UserError(f"could not read the run '{path}': {str(exc).splitlines()[0]}.") from exc


def diff_runs(args: argparse.Namespace) -> None:
    _check_format(args.format, ("table", "json"))
    a, b = _load_named(args.run_a), _load_named(args.run_b)
    report = config_diff(a, b)
    if args.format == "json":
        print(json.dumps(report, indent=1, default=str))
        return
    header = ["", "A", "B"]
    sections: list[tuple[str, list[list[str]]]] = [
        ("runs", [["run", *report["runs"]], ["status", *map(_cell, report["status"])]]),
        (
            f"config ({len(report['config'])} keys differ)",
            [[k, _cell(x), _cell(y)] for k, (x, y) in report["config"].items()],
        ),
        (
            f"packages ({len(report['packages'])} differ)",
            [[k, _cell(x), _cell(y)] for k, (x, y) in report["packages"].items()],
        ),
        (
            "code and data",
            [
                ["commit", *(_cell(c)[:7] for c in report["commit"])],
                ["data fingerprint", *(_cell(f)[:12] for f in report["data_fingerprint"])],
            ],
        ),
        (
            "metrics",
            [["best_metric", *map(_cell, report["best_metric"])]]
            + [["best", *(_cell(v, "best") for v in report["best"])]]
            + [[k, _cell(x, k), _cell(y, k)] for k, (x, y) in report["metrics"].items()],
        ),
    ]
    for title, rows in sections:
        if rows:
            _print_table(header, rows, title)
        else:
            print(f"{title}: none")


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["diff"]:
            diff_runs(_diff_parser().parse_args(argv[1:]))
        else:
            list_runs(_list_parser().parse_args(argv))
    except UserError as exc:
        message = str(exc)
        print(f"{PROG}: error: {message[:1].upper()}{message[1:]}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
