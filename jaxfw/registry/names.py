"""What a user may type: model names, alias names, tags (k=v) and model references
(NAME, NAME/N, NAME@ALIAS), each checked once here with a one-sentence error."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jaxfw.errors import UserError

# Names become directory names on any filesystem (a mounted bucket too), so they keep to
# characters that need no quoting anywhere and cannot climb out of the registry.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# An alias starts with a letter so that NAME@ALIAS never reads like a version number.
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
_TAG_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}")
MAX_TAG_VALUE = 1000

NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100"
ALIAS_RULE = "letters, digits, '.', '_' and '-', starting with a letter, at most 64"
REF_FORMS = "NAME, NAME/VERSION or NAME@ALIAS"


@dataclass(frozen=True)
class Ref:
    """A model reference: `version` or `alias` set, or neither for the latest version."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"Model name {name!r} is not allowed; use {NAME_RULE} characters.")
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise UserError(f"Alias {alias!r} is not allowed; use {ALIAS_RULE} characters.")
    return alias


def parse_version(text: str | int, name: str) -> int:
    """A version number as typed (`3`), for model `name`'s messages."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 1:
        return text
    if isinstance(text, str) and text.isascii() and text.isdigit() and int(text) >= 1:
        return int(text)
    raise UserError(
        f"Version {text!r} of model '{name}' is not a version number; versions are 1, 2, 3, ..."
    )


def parse_ref(text: str) -> Ref:
    """NAME, NAME/N or NAME@ALIAS."""
    if not isinstance(text, str) or not text:
        raise UserError(f"No model given; name one as {REF_FORMS}.")
    if "@" in text:
        name, _, alias = text.partition("@")
        return Ref(check_name(name), alias=check_alias(alias))
    if "/" in text:
        name, _, version = text.partition("/")
        return Ref(check_name(name), version=parse_version(version, name))
    if not _NAME.fullmatch(text):
        raise UserError(
            f"Model {text!r} is not a model reference; write {REF_FORMS} ({NAME_RULE} "
            "characters in NAME)."
        )
    return Ref(text)


def parse_tags(pairs: list[str] | tuple[str, ...] | dict[str, str]) -> dict[str, str]:
    """`["k=v", ...]` (or a dict, from Python) as a checked dict; the last of a repeated
    key wins, as on a command line."""
    items = list(pairs.items()) if isinstance(pairs, dict) else []
    if not isinstance(pairs, dict):
        for pair in pairs:
            key, sep, value = str(pair).partition("=")
            if not sep:
                raise UserError(f"Tag {pair!r} is not key=value; write e.g. owner=ana.")
            items.append((key, value))
    tags: dict[str, str] = {}
    for key, value in items:
        if not isinstance(key, str) or not _TAG_KEY.fullmatch(key):
            raise UserError(
                f"Tag key {key!r} is not allowed; use letters, digits, '_', '.', ':' and '-' "
                "(at most 64), as in owner=ana."
            )
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE or "\n" in value:
            raise UserError(
                f"The value of tag '{key}' is not allowed; a tag value is one line of at most "
                f"{MAX_TAG_VALUE} characters."
            )
        tags[key] = value
    return tags


def listing(items: Iterable[Any]) -> str:
    return ", ".join(str(i) for i in items)


def versions_text(versions: Iterable[int]) -> str:
    """1, 2, 3, 7 as "1-3, 7": a long history stays one short sentence."""
    runs: list[list[int]] = []
    for v in versions:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
