"""A model's events.jsonl: one JSON line per register, alias set, alias rm and tag, never
rewritten. It is the record of who did what when, and the source of a model's aliases and
later tags (replayed in order), so a change and its history cannot disagree."""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jaxfw.registry import fs

REGISTER, ALIAS_SET, ALIAS_RM, TAG = "register", "alias-set", "alias-rm", "tag"
ACTIONS = (REGISTER, ALIAS_SET, ALIAS_RM, TAG)


def iso(moment: datetime) -> str:
    """UTC, seconds precision with microseconds kept, 'Z' suffix (as jaxfw's other files)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: Any) -> datetime | None:
    """An ISO-8601 time as an aware UTC datetime; None for null or an unreadable value
    (a card from an older exporter must not stop `stats`)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def make(action: str, moment: datetime, version: int, **fields: Any) -> dict[str, Any]:
    return {"time": iso(moment), "user": who(), "action": action, "version": version, **fields}


def append(path: Path, event: dict[str, Any]) -> None:
    fs.append_line(path, json.dumps(event, sort_keys=False))


def read(path: Path) -> list[dict[str, Any]]:
    """The events in the order they were written; a line cut short by a crash is skipped."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    found = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("action") in ACTIONS:
            found.append(event)
    return found


def aliases(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """alias -> version, as the alias events leave them."""
    current: dict[str, int] = {}
    for event in events:
        if event["action"] == ALIAS_SET:
            current[event["alias"]] = event["version"]
        elif event["action"] == ALIAS_RM:
            current.pop(event["alias"], None)
    return dict(sorted(current.items()))


def tag_changes(events: Iterable[dict[str, Any]], version: int) -> dict[str, str | None]:
    """The tag events of `version` folded in order: key -> value, None for a removed key."""
    changes: dict[str, str | None] = {}
    for event in events:
        if event["action"] == TAG and event["version"] == version:
            changes.update(event.get("tags", {}))
    return changes
