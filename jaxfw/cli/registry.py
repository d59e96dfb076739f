"""`jaxfw-registry`: register exported models as numbered versions, name them with
aliases, and read their history (see HELP and docs/registry.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from jaxfw.errors import UserError
from jaxfw.registry import Ref, Registry, parse_ref, text
from jaxfw.registry.registry import ENV, PRODUCTION

PROG = "jaxfw-registry"
HELP = f"""Keep exported models (jaxfw-export folders) as numbered, immutable versions in a
registry folder (--registry DIR, else ${ENV}, else ./registry), name versions with
aliases (production, staging, ...) and read their history.

A model is named NAME (its latest version), NAME/N (version N) or NAME@ALIAS.

Exit codes: 0 done; 2 a mistake in the command or its input (one line on stderr, the
registry unchanged)."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as the one-sentence UserError."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message[:1].upper()}{message[1:]}; see {self.prog} --help.")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    # SUPPRESS: --registry may come before or after the command without one erasing the other.
    common.add_argument(
        "--registry",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=f"the registry folder (default: ${ENV} or ./registry)",
    )
    as_json = _Parser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser = _Parser(
        prog=PROG,
        description=HELP,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, *parents: argparse.ArgumentParser) -> Any:
        return commands.add_parser(
            name, help=summary, description=summary, parents=[common, *parents]
        )

    sub = command("register", "store an export folder as the next version of NAME", as_json)
    sub.add_argument("export_dir", metavar="EXPORT_DIR")
    sub.add_argument("--name", required=True, metavar="NAME")
    sub.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    alias = command("alias", "point an alias at a version, or remove it")
    actions = alias.add_subparsers(dest="alias_action", required=True, metavar="ACTION")
    sub = actions.add_parser("set", help="point ALIAS at version N", parents=[common])
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("alias", metavar="ALIAS")
    sub.add_argument("version", metavar="N")
    sub = actions.add_parser("rm", help="remove ALIAS", parents=[common])
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("alias", metavar="ALIAS")
    sub = command(
        "list", "models with their latest version and aliases; or NAME's versions", as_json
    )
    sub.add_argument("name", nargs="?", metavar="NAME")
    sub = command("show", "a version's metrics, lineage, tags and aliases", as_json)
    sub.add_argument("ref", metavar="NAME[/N|@ALIAS]")
    sub = command("diff", "two versions: metrics, config changes, data, size", as_json)
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("a", metavar="N")
    sub.add_argument("b", metavar="M")
    sub = command("tag", "set tags of a version (KEY= removes one)", as_json)
    sub.add_argument("ref", metavar="NAME/N")
    sub.add_argument("tags", nargs="+", metavar="KEY=VALUE")
    sub = command("events", "the history of NAME: registers, alias moves, tags", as_json)
    sub.add_argument("name", metavar="NAME")
    sub = command("stats", "deploy frequency, lead time, change-failure rate", as_json)
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--alias", default=PRODUCTION, help="the alias whose moves are deploys")
    return parser


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=1, default=str))


def run(args: argparse.Namespace) -> None:
    registry = Registry(getattr(args, "registry", None))
    show_json = getattr(args, "json", False)
    if args.command == "register":
        done = registry.register(args.export_dir, args.name, args.tag)
        if show_json:
            _print_json(
                {
                    "name": done.name,
                    "version": done.version,
                    "created": done.created,
                    "path": str(done.path),
                }
            )
        elif done.created:
            print(f"registered {done.name} version {done.version} ({done.path})")
        else:
            note = "; its tags are unchanged (use jaxfw-registry tag)" if args.tag else ""
            print(
                f"{done.name} version {done.version} already holds this content; nothing "
                f"new was stored{note}"
            )
    elif args.command == "alias" and args.alias_action == "set":
        previous = registry.set_alias(args.name, args.alias, args.version)
        version = registry.version(f"{args.name}@{args.alias}")
        was = "was unset" if previous is None else f"was version {previous}"
        print(f"{args.name}@{args.alias} -> version {version} ({was})")
    elif args.command == "alias":
        previous = registry.remove_alias(args.name, args.alias)
        print(f"removed {args.name}@{args.alias} (was version {previous})")
    elif args.command == "list" and args.name is None:
        rows = registry.models()
        _print_json(rows) if show_json else print(text.models(rows, str(registry.path)))
    elif args.command == "list":
        rows = registry.versions(args.name)
        _print_json(rows) if show_json else print(text.versions(rows))
    elif args.command == "show":
        info = registry.show(args.ref)
        _print_json(info) if show_json else print(text.show(info))
    elif args.command == "diff":
        report = registry.diff(args.name, args.a, args.b)
        _print_json(report) if show_json else print(text.diff(report))
    elif args.command == "tag":
        ref = parse_ref(args.ref)
        name, version = ref.name, registry.version(ref)
        tags = registry.tag(Ref(name, version=version), args.tags)  # the version named now
        if show_json:
            _print_json({"name": name, "version": version, "tags": tags})
        else:
            print(
                f"{name}/{version} tags: "
                + (", ".join(f"{k}={v}" for k, v in tags.items()) or "none")
            )
    elif args.command == "events":
        rows = registry.events(args.name)
        _print_json(rows) if show_json else print(text.events(rows))
    elif args.command == "stats":
        report = registry.stats(args.name, args.alias)
        _print_json(report) if show_json else print(text.stats(report))


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        run(_parser().parse_args(argv))
    except UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
