"""`jaxfw.registry.Registry`: named, numbered, immutable model versions in a folder, with
aliases, tags and an event history. Imports only the standard library and the artifact's
format modules, so a serving process can resolve `fraud@production` without JAX."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jaxfw.artifact.layout import CARD
from jaxfw.artifact.manifest import verify_artifact
from jaxfw.errors import UserError
from jaxfw.registry import compare, deploys, events, fs
from jaxfw.registry.names import (
    Ref,
    check_alias,
    check_name,
    listing,
    parse_ref,
    parse_tags,
    parse_version,
    versions_text,
)
from jaxfw.registry.store import Store

ENV = "JAXFW_REGISTRY"
DEFAULT_PATH = "registry"
PRODUCTION = "production"


def default_path() -> Path:
    return Path(os.environ.get(ENV) or DEFAULT_PATH)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Registration:
    name: str
    version: int
    path: Path
    created: bool  # False: identical content was already this version


class Registry:
    """A model registry folder (`path`, default $JAXFW_REGISTRY or ./registry). `clock`
    gives the time written into events (UTC now by default; tests pass their own)."""

    def __init__(
        self, path: str | Path | None = None, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._clock = clock or _utc_now
        self._store = Store(self.path)

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    def _now(self) -> datetime:
        moment = self._clock()
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment

    # ------------------------------------------------------------------ names

    def names(self) -> list[str]:
        return self._store.names()

    def _records(self, name: str) -> dict[int, dict[str, Any]]:
        check_name(name)
        records = self._store.records(name)
        if not records:
            known = self.names()
            where = f"the registry '{self.path}'"
            if known:
                raise UserError(
                    f"Model '{name}' is not in {where}; its models are {listing(known)}."
                )
            raise UserError(
                f"Model '{name}' is not in {where}, which holds no models yet; register one "
                "with jaxfw-registry register EXPORT_DIR --name NAME."
            )
        return records

    def aliases(self, name: str) -> dict[str, int]:
        self._records(name)
        return events.aliases(events.read(self._store.events_path(name)))

    def version(self, ref: str | Ref) -> int:
        """The version number `ref` (NAME, NAME/N, NAME@ALIAS) names now."""
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        records = self._records(ref.name)
        if ref.alias is not None:
            aliases = self.aliases(ref.name)
            if ref.alias not in aliases:
                raise UserError(self._no_alias(ref.name, ref.alias, aliases))
            return aliases[ref.alias]
        if ref.version is None:
            return max(records)
        if ref.version not in records:
            raise UserError(
                f"Model '{ref.name}' has no version {ref.version}; its versions are "
                f"{versions_text(records)}."
            )
        return ref.version

    @staticmethod
    def _no_alias(name: str, alias: str, aliases: Mapping[str, int]) -> str:
        if aliases:
            return f"Model '{name}' has no alias '{alias}'; its aliases are {listing(aliases)}."
        return (
            f"Model '{name}' has no alias '{alias}'; it has no aliases yet (set one with "
            f"jaxfw-registry alias set {name} ALIAS VERSION)."
        )

    def resolve(self, ref: str | Ref) -> Path:
        """The stored artifact folder of `ref`."""
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        version = self.version(ref)
        return self._store.artifact_dir(ref.name, self._store.records(ref.name)[version])

    def load(self, ref: str | Ref) -> Any:
        """The artifact of `ref`, loaded (and verified) by `jaxfw.artifact.load`."""
        path = self.resolve(ref)
        # Loading an artifact starts JAX; resolving and listing must not, so it is imported here.
        from jaxfw.artifact import load as load_artifact

        return load_artifact(path)

    # ------------------------------------------------------------------ register

    def register(
        self, export_dir: str | Path, name: str, tags: Mapping[str, str] | Iterable[str] = ()
    ) -> Registration:
        """Store the artifact `export_dir` as the next version of `name` (verified before
        and after copying); identical content returns the version that already holds it."""
        check_name(name)
        tags = parse_tags(dict(tags) if isinstance(tags, Mapping) else list(tags))
        tags = {k: v for k, v in tags.items() if v}  # an empty value means "no such tag"
        source = Path(export_dir)
        manifest = verify_artifact(source)
        record = {
            "registered_at": events.iso(self._now()),
            "registered_by": events.who(),
            "source": str(source.resolve()),
            "tags": tags,
        }
        with self._writes():
            stored, created = self._store.register(source, name, manifest, record)
        path = self._store.artifact_dir(name, stored)
        return Registration(name, stored["version"], path, created)

    def _writes(self) -> contextlib.AbstractContextManager[None]:
        return fs.refusals(self.path)

    # ------------------------------------------------------------------ aliases and tags

    def set_alias(self, name: str, alias: str, version: int | str) -> int | None:
        """Point `alias` at `version`; returns the version it pointed at before (or None)."""
        check_alias(alias)
        version = self.version(Ref(name, version=parse_version(version, name)))
        with self._writes(), self._store.writing(name):
            previous = self.aliases(name).get(alias)
            event = events.make(
                events.ALIAS_SET, self._now(), version, alias=alias, previous=previous
            )
            events.append(self._store.events_path(name), event)
        return previous

    def remove_alias(self, name: str, alias: str) -> int:
        """Remove `alias`; returns the version it pointed at."""
        check_alias(alias)
        if alias not in (aliases := self.aliases(name)):
            raise UserError(self._no_alias(name, alias, aliases))
        with self._writes(), self._store.writing(name):
            aliases = self.aliases(name)
            if alias not in aliases:  # removed meanwhile by another process
                raise UserError(self._no_alias(name, alias, aliases))
            event = events.make(
                events.ALIAS_RM, self._now(), aliases[alias], alias=alias, previous=aliases[alias]
            )
            events.append(self._store.events_path(name), event)
        return aliases[alias]

    def tags(self, ref: str | Ref) -> dict[str, str]:
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        version = self.version(ref)
        record = self._store.records(ref.name)[version]
        current = dict(record.get("tags", {}))
        for key, value in events.tag_changes(self._events(ref.name), version).items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        return dict(sorted(current.items()))

    def tag(self, ref: str | Ref, tags: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
        """Set tags of a version (`key=` removes one); returns its tags after. The artifact's
        files do not change: tags live in the event history."""
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        changes = parse_tags(dict(tags) if isinstance(tags, Mapping) else list(tags))
        if not changes:
            raise UserError(f"No tags given for {ref}; write key=value, e.g. owner=ana.")
        version = self.version(ref)
        folded: dict[str, str | None] = {k: (v or None) for k, v in changes.items()}
        with self._writes(), self._store.writing(ref.name):
            event = events.make(events.TAG, self._now(), version, tags=folded)
            events.append(self._store.events_path(ref.name), event)
        return self.tags(Ref(ref.name, version=version))

    # ------------------------------------------------------------------ reading

    def _events(self, name: str) -> list[dict[str, Any]]:
        return events.read(self._store.events_path(name))

    def events(self, name: str) -> list[dict[str, Any]]:
        self._records(name)
        return self._events(name)

    def card(self, ref: str | Ref) -> dict[str, Any]:
        try:
            card = json.loads((self.resolve(ref) / CARD).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return card if isinstance(card, dict) else {}

    def show(self, ref: str | Ref) -> dict[str, Any]:
        """A version's metrics, lineage, tags and the aliases that point at it."""
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        version = self.version(ref)
        exact = Ref(ref.name, version=version)
        record = self._store.records(ref.name)[version]
        card = self.card(exact)
        git = card.get("git") if isinstance(card.get("git"), dict) else {}
        return {
            "name": ref.name,
            "version": version,
            "path": str(self.resolve(exact)),
            "content_hash": record["content_hash"],
            "registered_at": record.get("registered_at"),
            "registered_by": record.get("registered_by"),
            "source": record.get("source"),
            "tags": self.tags(exact),
            "aliases": [a for a, v in self.aliases(ref.name).items() if v == version],
            "task": card.get("task"),
            "metrics": card.get("metrics") or {},
            "parameter_count": card.get("parameter_count"),
            "lineage": {
                "run_id": card.get("run_id"),
                "run_name": card.get("run_name"),
                "run_dir": card.get("run_dir"),
                "git_commit": git.get("commit"),
                "git_dirty": git.get("dirty"),
                "data_fingerprint": card.get("data_fingerprint"),
                "checkpoint": card.get("checkpoint"),
                "run_started_at": card.get("run_started_at"),
                "run_finished_at": card.get("run_finished_at"),
                "exported_at": card.get("exported_at"),
                "jax_version": card.get("jax_version"),
            },
        }

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of `name`, oldest first, as `show` describes it."""
        return [self.show(Ref(name, version=v)) for v in self._records(name)]

    def models(self) -> list[dict[str, Any]]:
        """Every model: its latest version, how many versions, its aliases."""
        return [
            {
                "name": name,
                "latest": max(records := self._store.records(name)),
                "versions": len(records),
                "aliases": self.aliases(name),
            }
            for name in self.names()
        ]

    def diff(self, name: str, a: int | str, b: int | str) -> dict[str, Any]:
        """Version `a` against `b` (numbers or alias names): metrics, config, data, size."""
        first, second = (self._version_or_alias(name, x) for x in (a, b))
        cards = [self.card(Ref(name, version=v)) for v in (first, second)]
        return {"name": name, "a": first, "b": second, **compare.cards(*cards)}

    def _version_or_alias(self, name: str, which: int | str) -> int:
        if isinstance(which, int) or (isinstance(which, str) and which.isdigit()):
            return self.version(Ref(check_name(name), version=parse_version(which, name)))
        return self.version(Ref(check_name(name), alias=check_alias(which)))

    def stats(self, name: str, alias: str = PRODUCTION, weeks: int = 12) -> dict[str, Any]:
        """Deployment frequency, lead time and change-failure rate from `alias`'s moves."""
        check_alias(alias)
        records = self._records(name)
        finished = {
            v: events.parse_time(self.card(Ref(name, version=v)).get("run_finished_at"))
            for v in records
        }
        report = deploys.stats(self._events(name), alias, finished, self._now(), weeks)
        return {"name": name, **report}
