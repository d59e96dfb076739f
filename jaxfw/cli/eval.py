"""`jaxfw-eval <run_dir> [split=test] [checkpoint=best|latest|<step>]`: evaluate a run's
checkpoint on a split and write <run_dir>/report/ (metrics.json, PNG plots, report.html)."""

import logging
import sys
from collections.abc import Sequence

from jaxfw import xla_flags
from jaxfw.errors import UserError

PROG = "jaxfw-eval"
USAGE = f"usage: {PROG} <run_dir> [split=train|val|test] [checkpoint=best|latest|<step>]"


def parse_args(argv: Sequence[str]) -> tuple[str, dict[str, str]]:
    if not argv or argv[0] in ("-h", "--help"):
        raise UserError(USAGE)
    run_dir, options = argv[0], {"split": "test", "checkpoint": "best"}
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if not sep or key not in options or not value:
            raise UserError(f"Unknown argument '{arg}'; {USAGE}.")
        options[key] = value
    return run_dir, options


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    xla_flags.configure()  # before JAX starts its backend
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's notes on read-only opens
    try:
        run_dir, options = parse_args(argv)
        from jaxfw.evaluation import evaluate_run  # JAX loads only for real work

        document = evaluate_run(run_dir, options["split"], options["checkpoint"])
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    scalars = {k: v for k, v in document["metrics"].items() if isinstance(v, float)}
    print("  ".join(f"{options['split']}/{k} {v:.4f}" for k, v in scalars.items()))
    kind, step = document["checkpoint"]["kind"], document["checkpoint"]["step"]
    print(f"checkpoint {kind} (step {step})  report {document['paths']['html']}")


if __name__ == "__main__":
    main()
