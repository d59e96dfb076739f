"""`jaxfw-export <run_dir> [checkpoint=best|latest|<step>] [out=DIR] [export.platforms=[cpu]]`."""

import logging
import sys
from collections.abc import Sequence

from jaxfw import xla_flags
from jaxfw.cli.run_args import parse_run_args
from jaxfw.errors import UserError

PROG = "jaxfw-export"
USAGE = (
    f"usage: {PROG} <run_dir> [checkpoint=best|latest|<step>] [out=DIR] "
    "[export.platforms=[cpu,cuda,tpu]]"
)
HELP = f"""{USAGE}

Export a run's checkpoint (default: the best) as a deployable artifact directory (default:
<run_dir>/export/<kind>-<step>): model.jaxexport (the predict program, lowered for cpu,
cuda and tpu unless export.platforms says otherwise), weights.safetensors, signature.json,
preprocessing.json, reference.json (drift baseline), card.json, MODEL_CARD.md and
manifest.json (sha256 of every file). Load it with `jaxfw.artifact.load(DIR)`, which needs
only jax, numpy, flatbuffers and safetensors; register it with `jaxfw-registry register`.

Exit codes: 0 written (its path on stdout); 2 a mistake in the command or the run directory
(one line on stderr, nothing written); 1 the artifact could not be written (a read-only
or full disk; one line on stderr, nothing left behind)."""

OPTIONS = {"checkpoint": "best", "out": None, "export.platforms": "cpu,cuda,tpu"}


def platform_list(value: str) -> list[str]:
    """'[cpu,tpu]', 'cpu,tpu' or 'cpu' -> ['cpu', 'tpu']."""
    inner = value.strip().removeprefix("[").removesuffix("]")
    return [p.strip().strip("'\"") for p in inner.split(",") if p.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(HELP)
        return
    xla_flags.configure()  # before JAX starts its backend
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's notes on read-only opens
    try:
        run_dir, options = parse_run_args(argv, OPTIONS, USAGE)
        from jaxfw.export import export_run  # JAX loads only for real work

        path = export_run(
            run_dir,
            checkpoint=options["checkpoint"],
            out=options["out"],
            platforms=platform_list(options["export.platforms"]),
        )
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # a read-only or full disk: nothing half-written stays behind
        where = f" {exc.filename}" if exc.filename else ""
        print(
            f"{PROG}: error: Could not write the artifact{where} ({exc.strerror or exc}); "
            "nothing was exported.",
            file=sys.stderr,
        )
        sys.exit(1)
    print(path)


if __name__ == "__main__":
    main()
