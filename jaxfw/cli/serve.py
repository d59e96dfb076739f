"""`jaxfw-serve MODEL [MODEL...]`: serve exported models over the Open Inference Protocol
(see HELP; the server itself is jaxfw/serve/)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from jaxfw.errors import UserError
from jaxfw.serve.options import DEFAULT_PORT, ServeOptions

PROG = "jaxfw-serve"
HELP = """Serve exported models (jaxfw-export folders or registry references such as
digits@production or digits/3) over the Open Inference Protocol (KServe v2 REST):
/v2/health/live, /v2/health/ready (true once every model is loaded and warm),
/v2/models/NAME[/versions/V][/ready|/infer], /v2/models/NAME/drift, /metrics.

Requests are batched dynamically; a NAME@ALIAS model switches to the alias's new
version when it moves (polling, or at once on SIGHUP) without failing a request.
Only jax, numpy and the web stack are loaded: no training code.

Exit codes: 0 stopped (Ctrl-C, SIGTERM); 2 a mistake in the command or a model that
cannot be served (one line on stderr)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as the one-sentence UserError."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message[:1].upper()}{message[1:]}; see {self.prog} --help.")


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value

    return parse


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = ServeOptions(models=())
    parser = _Parser(
        prog=PROG, description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="an export folder, NAME@ALIAS, NAME/N or NAME (latest)",
    )
    parser.add_argument(
        "--host",
        default=defaults.host,
        help="address to bind (default 127.0.0.1: this machine only)",
    )
    parser.add_argument("--port", type=_positive(int), default=DEFAULT_PORT)
    parser.add_argument(
        "--registry",
        metavar="DIR",
        help="registry folder for NAME@ALIAS (default $JAXFW_REGISTRY or ./registry)",
    )
    parser.add_argument(
        "--auth-token-file",
        metavar="FILE",
        help="require 'Authorization: Bearer <the file's content>'",
    )
    parser.add_argument(
        "--open-health",
        action="store_true",
        help="with --auth-token-file: leave /v2/health/* open for probes",
    )
    parser.add_argument("--max-batch-rows", type=_positive(int), default=defaults.max_batch_rows)
    parser.add_argument("--max-delay-ms", type=_non_negative, default=defaults.max_delay_ms)
    parser.add_argument("--max-queue-rows", type=_positive(int), default=defaults.max_queue_rows)
    parser.add_argument(
        "--request-timeout-s", type=_positive(float), default=defaults.request_timeout_s
    )
    parser.add_argument("--max-body-mb", type=_positive(float), default=defaults.max_body_mb)
    parser.add_argument(
        "--poll-s",
        type=_non_negative,
        default=defaults.poll_s,
        help="seconds between registry alias checks (0: only on SIGHUP)",
    )
    parser.add_argument(
        "--drift-window-rows", type=_positive(int), default=defaults.drift_window_rows
    )
    parser.add_argument("--drift-window-s", type=_non_negative, default=defaults.drift_window_s)
    parser.add_argument(
        "--log-level", default=defaults.log_level, choices=["debug", "info", "warning", "error"]
    )
    return parser


def parse_options(argv: Sequence[str]) -> ServeOptions:
    args = build_parser().parse_args(list(argv))
    return ServeOptions(
        models=tuple(args.models),
        host=args.host,
        port=args.port,
        registry=args.registry or os.environ.get("JAXFW_REGISTRY"),
        auth_token_file=args.auth_token_file,
        open_health=args.open_health,
        max_batch_rows=args.max_batch_rows,
        max_delay_ms=args.max_delay_ms,
        max_queue_rows=args.max_queue_rows,
        request_timeout_s=args.request_timeout_s,
        max_body_mb=args.max_body_mb,
        poll_s=args.poll_s,
        drift_window_rows=args.drift_window_rows,
        drift_window_s=args.drift_window_s,
        log_level=args.log_level,
    )


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        options = parse_options(argv)
        from jaxfw.serve.app import serve  # JAX and the web stack load only for real work

        serve(options)
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
