"""`jaxfw-eval <run_dir> [split=test] [checkpoint=best|latest|<step>]` (see HELP)."""

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxfw import xla_flags
from jaxfw.cli.run_args import parse_run_args
from jaxfw.errors import UserError

PROG = "jaxfw-eval"
USAGE = f"usage: {PROG} <run_dir> [split=train|val|test] [checkpoint=best|latest|<step>]"
REPORT_NOT_WRITTEN = 3
HELP = f"""{USAGE}

Evaluate a run's checkpoint on a split (default: test, best checkpoint), print its
metrics and write the report (metrics.json, PNG plots, report.html) to
<run_dir>/eval/<split>-<checkpoint>/, e.g. eval/val-latest/ or eval/test-1500/.
Training's own report/ (test split, best checkpoint) is never replaced.

Exit codes: 0 done; 2 a mistake in the command or the run directory (one line on
stderr, nothing evaluated); {REPORT_NOT_WRITTEN} the metrics were printed but the report could not
be written (e.g. a read-only run directory; one line on stderr says where and why)."""


def parse_args(argv: Sequence[str]) -> tuple[str, dict[str, str]]:
    return parse_run_args(argv, {"split": "test", "checkpoint": "best"}, USAGE)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:  # asked for: stdout, success
        print(HELP)
        return
    xla_flags.configure()  # before JAX starts its backend
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's notes on read-only opens
    try:
        run_dir, options = parse_args(argv)
        # JAX loads only for real work.
        from jaxfw.evaluation.run import eval_directory, evaluate_checkpoint, write_evaluation

        split, checkpoint = options["split"], options["checkpoint"]
        document = evaluate_checkpoint(run_dir, split, checkpoint)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    # The metrics first: they stand even when the report cannot be written.
    scalars = {k: v for k, v in document["metrics"].items() if isinstance(v, float)}
    print("  ".join(f"{split}/{k} {v:.4f}" for k, v in scalars.items()))
    kind, step = document["checkpoint"]["kind"], document["checkpoint"]["step"]
    print(f"checkpoint {kind} (step {step})", flush=True)
    directory = Path(run_dir) / eval_directory(split, checkpoint)
    try:
        write_evaluation(Path(run_dir), document, eval_directory(split, checkpoint))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(
            f"{PROG}: error: Could not write the report to {directory}/ ({reason}); "
            "the metrics above are not saved.",
            file=sys.stderr,
        )
        sys.exit(REPORT_NOT_WRITTEN)
    print(f"report {directory}/ (report.html, metrics.json, plots)")


if __name__ == "__main__":
    main()
