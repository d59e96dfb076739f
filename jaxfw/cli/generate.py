"""`jaxfw-generate <run_dir> --prompt "def " --max-new-tokens 200 --temperature 0.8`:
sample bytes from a trained language-model run's best checkpoint, printed as they come.

Ctrl-C stops sampling: what was generated is printed, then a newline, exit code 130.

This module stays free of JAX imports so that bad arguments are rejected at once, before
JAX and the checkpoint load; jaxfw.generate uses the same checks.
"""

import argparse
import codecs
import logging
import os
import signal
import sys
import time
from collections.abc import Iterable, Sequence

from jaxfw import xla_flags
from jaxfw.errors import UserError
from jaxfw.sampling import MAX_NEW_TOKENS, check_sampling

PROG = "jaxfw-generate"
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd command
BROKEN_PIPE = 141  # 128 + SIGPIPE, likewise for a reader that stopped reading
# Output is flushed every FLUSH_BYTES bytes or FLUSH_S seconds, whichever comes first:
# text appears while a slow model samples, without one write per byte for a fast one.
FLUSH_BYTES = 64
FLUSH_S = 0.2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\nThis")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--prompt", required=True)
    parser.add_argument(
        "--max-new-tokens", type=int, default=200, help=f"1 to {MAX_NEW_TOKENS:,} (bytes)"
    )
    parser.add_argument("--temperature", type=float, default=0.8, help=">= 0; 0 is greedy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default="best", help="best, latest or a step")
    return parser


def _print_stream(prompt: str, tokens: Iterable[int]) -> int:
    """Print `prompt` and the bytes as they come; the exit code (130 on Ctrl-C)."""
    # A multi-byte character may be split across chunks: the decoder keeps its start.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = sys.stdout
    out.write(prompt)
    out.flush()
    pending, last_flush, code = bytearray(), time.monotonic(), 0
    try:
        for token in tokens:
            pending.append(token)
            if len(pending) >= FLUSH_BYTES or time.monotonic() - last_flush >= FLUSH_S:
                out.write(decoder.decode(bytes(pending)))
                out.flush()
                pending.clear()
                last_flush = time.monotonic()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the tail
        code = INTERRUPTED
    out.write(decoder.decode(bytes(pending), final=True) + "\n")
    out.flush()
    return code


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)  # argparse prints one usage line and exits 2
    try:
        check_sampling(args.max_new_tokens, args.temperature)
        xla_flags.configure()  # before JAX starts its backend
        logging.getLogger("absl").setLevel(logging.ERROR)
        from jaxfw.generate import load_language_model, stream  # JAX: after the checks

        model = load_language_model(args.run_dir, args.checkpoint)
        tokens = stream(model, args.prompt, args.max_new_tokens, args.temperature, args.seed)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # before anything was generated
        sys.exit(INTERRUPTED)
    # Terminals that cannot show a character get '?' rather than an encoding traceback.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    try:
        code = _print_stream(args.prompt, tokens)
    except BrokenPipeError:  # `| head` closed the pipe: the reader has what it wanted
        # Python would flush into the closed pipe at exit and print a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = BROKEN_PIPE
    sys.exit(code)


if __name__ == "__main__":
    main()
