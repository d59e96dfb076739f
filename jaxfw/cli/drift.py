"""`jaxfw-drift EXPORT_OR_REF DATA [--out DIR] [--registry DIR]` (see HELP)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from jaxfw.errors import UserError
from jaxfw.json_values import to_jsonable

PROG = "jaxfw-drift"
NOT_WRITTEN = 3
HELP = f"""Compare a file of new data (.csv or .parquet) with the training data of an exported
model (a jaxfw-export folder or a registry reference such as digits@production or
digits/3): per feature, PSI over the reference's bins, a KS test (numeric) or the
Jensen-Shannon distance and a chi-square test (categorical), and a status (ok, watch,
drift). Writes drift.json and drift.html (one plot per feature) to --out (default
./drift-<file stem>/) and prints a one-line summary.

Tables are matched by their raw column names, array models by their feature names (e.g.
'mean radius', 'pixel_0_0' or x0, x1, ...); other columns are ignored.

Exit codes: 0 compared (drifted or not: drift.json says); 2 a mistake in the command, the
model or the data file (one line on stderr); {NOT_WRITTEN} the report could not be written."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as the one-sentence UserError."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message[:1].upper()}{message[1:]}; see {self.prog} --help.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", metavar="EXPORT_OR_REF", help="artifact folder or NAME@ALIAS")
    parser.add_argument("data", metavar="DATA", help="a .csv or .parquet file of new data")
    parser.add_argument("--out", metavar="DIR", help="output folder (default ./drift-<stem>/)")
    parser.add_argument(
        "--registry",
        metavar="DIR",
        help="registry folder for NAME@ALIAS (default $JAXFW_REGISTRY or ./registry)",
    )
    return parser


def default_out(data: str) -> Path:
    name = Path(data).name
    for suffix in (".gz", ".bz2", ".csv", ".parquet", ".pq"):
        name = name.removesuffix(suffix)
    return Path(f"drift-{name}")


def write_report(document: dict, out: Path) -> tuple[Path, Path]:
    # matplotlib (through the page's plots) only once there is a report to write.
    from jaxfw.drift.html import render_drift_html

    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "drift.json", out / "drift.html"
    page = render_drift_html(document)
    json_path.write_text(json.dumps(to_jsonable(document), indent=1) + "\n")
    html_path.write_text(page, encoding="utf-8")
    return json_path, html_path


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        # pyarrow and the table reader load only for real work (not for --help).
        from jaxfw.drift.files import analyse

        registry = args.registry or os.environ.get("JAXFW_REGISTRY")
        document = analyse(args.model, args.data, registry)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    out = Path(args.out) if args.out else default_out(args.data)
    drifted = document["drifted_features"]
    shown = f" ({', '.join(drifted[:5])}{', ...' if len(drifted) > 5 else ''})" if drifted else ""
    print(
        f"{len(drifted)} of {len(document['features'])} features drifted{shown}; "
        f"dataset drift: {'yes' if document['dataset_drift'] else 'no'} "
        f"({document['rows']} rows of {args.data})"
    )
    try:
        json_path, html_path = write_report(document, out)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"{PROG}: error: Could not write the report to {out}/ ({reason}).", file=sys.stderr)
        sys.exit(NOT_WRITTEN)
    print(f"report {json_path} {html_path}")


if __name__ == "__main__":
    main()
