"""`<run_dir> [key=value ...]`: the argument shape of the commands that act on a run
directory (jaxfw-eval, jaxfw-export)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jaxfw.errors import UserError


def parse_run_args(
    argv: Sequence[str], defaults: Mapping[str, str | None], usage: str
) -> tuple[str, dict[str, str | None]]:
    """(run_dir, options): `defaults` overridden by each `key=value`; anything else, or a
    missing run directory, is a UserError quoting `usage`."""
    if not argv:
        raise UserError(f"No run directory given; {usage}.")
    run_dir, options = argv[0], dict(defaults)
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if not sep or key not in options or not value:
            raise UserError(f"Unknown argument '{arg}'; {usage}.")
        options[key] = value
    return run_dir, options
