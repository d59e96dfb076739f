"""`jaxfw-generate <run_dir> --prompt "def " --max-new-tokens 200 --temperature 0.8`:
sample bytes from a trained language-model run's best checkpoint."""

import argparse
import logging
import sys
from collections.abc import Sequence

from jaxfw import xla_flags
from jaxfw.errors import UserError

PROG = "jaxfw-generate"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default="best", help="best, latest or a step")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)  # argparse prints one usage line and exits 2
    xla_flags.configure()  # before JAX starts its backend
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        from jaxfw.generate import generate, load_language_model

        model = load_language_model(args.run_dir, args.checkpoint)
        text = generate(model, args.prompt, args.max_new_tokens, args.temperature, args.seed)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.stdout.write(args.prompt + text.decode("utf-8", errors="replace") + "\n")


if __name__ == "__main__":
    main()
