"""The configuration reference (docs/configuration.md), generated from the typed schema.

Every key of `jaxfw/config/schema.py` with its type, default, allowed values and one line
of meaning, taken from the comment beside the field (or the comment lines right above it)
so the schema stays the one place a setting is described. Regenerate with

    python -m jaxfw.config.reference > docs/configuration.md

tests/test_config_reference.py fails when the page and the schema disagree, or when a key
has no comment to explain it.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import textwrap
import types
import typing
from typing import Any

from omegaconf import MISSING

from jaxfw.config import schema

_FIELD = re.compile(r"^    (\w+):")
HEADER = """# Configuration reference

Every key jaxfw reads, generated from the typed schema (`jaxfw/config/schema.py`) by
`python -m jaxfw.config.reference > docs/configuration.md`; a test fails when the two
disagree. Set a key on the command line (`jaxfw-train trainer.steps=500`), in a recipe or
in a `conf/` option file; a key that is not here, or a value outside its type or choices,
is refused with one sentence before anything runs.
"""


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment: the one on its line, else the comment lines above it."""
    lines = textwrap.dedent(inspect.getsource(cls)).splitlines()
    found: dict[str, str] = {}
    for index, line in enumerate(lines):
        match = _FIELD.match(line)
        if not match:
            continue
        trailing = line.partition("  # ")[2]
        if trailing.startswith(("type:", "noqa")):  # a note for tools, not for readers
            trailing = ""
        if trailing:
            found[match[1]] = trailing.strip()
            continue
        above = []
        for previous in reversed(lines[:index]):
            if not previous.strip().startswith("#"):
                break
            above.insert(0, previous.strip().lstrip("#").strip())
        found[match[1]] = " ".join(above)
    return found


def _type_name(hint: Any) -> str:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "choice"
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(names) + " or null"
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(hint))
        return f"{origin.__name__}[{args}]"
    return getattr(hint, "__name__", str(hint)).replace("Any", "any")


def _value(value: Any) -> str:
    if value is MISSING or value == "???":
        return "required"
    if isinstance(value, enum.Enum):
        return f"`{value.value}`"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict):
        inner = ", ".join(f"{k}: {_value(v).strip('`')}" for k, v in value.items())
        return f"`{{{inner}}}`"
    return f"`{value}`"


def _default(item: dataclasses.Field) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return MISSING


def _rows(cls: type, prefix: str) -> tuple[list[str], list[tuple[str, type]]]:
    """Table rows of `cls`'s plain keys, and its nested config groups."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    rows, groups = [], []
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        if dataclasses.is_dataclass(hint):
            groups.append((f"{prefix}{item.name}", hint))
            continue
        meaning = comments.get(item.name, "")
        if not meaning:
            raise ValueError(
                f"{cls.__name__}.{item.name} has no comment to explain it in "
                "jaxfw/config/schema.py; add one beside the field."
            )
        choices = ""
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            choices = ", ".join(f"`{member.value}`" for member in hint)
        rows.append(
            f"| `{prefix}{item.name}` | {_type_name(hint)} | {_value(_default(item))} | "
            f"{choices} | {meaning} |"
        )
    return rows, groups


def render_reference() -> str:
    out = [HEADER]
    pending: list[tuple[str, type]] = [("", schema.Config)]
    while pending:
        prefix, cls = pending.pop(0)
        rows, groups = _rows(cls, f"{prefix}." if prefix else "")
        title = f"`{prefix}`" if prefix else "Top level"
        doc = (cls.__doc__ or "").strip() if prefix else ""
        doc = "" if doc.startswith(f"{cls.__name__}(") else doc  # dataclasses' generated doc
        out += ["", f"## {title}", ""]
        if doc:
            out += [" ".join(doc.split()), ""]
        out += ["| key | type | default | choices | meaning |", "|---|---|---|---|---|", *rows]
        pending.extend(groups)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
