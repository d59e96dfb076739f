"""JAX's compatibility window for serialized exports, checked before deserializing.

JAX guarantees that a serialized `jax.export` artifact runs on a JAX up to 6 months newer
and 3 weeks older than the one that exported it. Release dates of future JAX versions are
unknowable here, so the check is conservative where it must guess:
- an older JAX than the exporter's is refused (its window is 3 weeks; re-export or upgrade);
- a newer JAX is accepted while the artifact is under 6 months old (the newer JAX was
  released before now); past that a warning says the window may be exceeded;
- whatever `jax.export.deserialize` still rejects is reported with both versions.
"""

from __future__ import annotations

import datetime
import re
import warnings

from jaxfw.artifact.errors import ArtifactError

NEWER_WINDOW = datetime.timedelta(days=182)


def version_tuple(version: str) -> tuple[int, ...]:
    """(0, 10, 2) for "0.10.2" (also "0.10.2.dev20261101", "0.10.2rc1")."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def check_jax_window(exporter: str, here: str, exported_at: str, *, now=None) -> None:
    """Raise (older JAX) or warn (artifact older than the newer-JAX window) -- see above."""
    if version_tuple(here) < version_tuple(exporter):
        raise ArtifactError(
            f"This artifact was exported with JAX {exporter}, newer than this process's JAX "
            f"{here}; JAX loads exports only up to 3 weeks older than the exporter: install "
            f"jax>={exporter} or re-export with JAX {here}."
        )
    if version_tuple(here) == version_tuple(exporter):
        return
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        exported = datetime.datetime.fromisoformat(exported_at)
    except (TypeError, ValueError):
        return  # no export time recorded: only deserialization can tell
    if now - exported > NEWER_WINDOW:
        warnings.warn(
            f"This artifact was exported with JAX {exporter} on {exported.date()}, over 6 "
            f"months ago; this process runs JAX {here}, possibly past JAX's 6-month "
            "compatibility window: re-export it if loading or results fail.",
            stacklevel=3,
        )


def deserialize_failed(exporter: str, here: str, exc: Exception) -> ArtifactError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ArtifactError(
        f"model.jaxexport (exported with JAX {exporter}) cannot be read by this process's JAX "
        f"{here}: {reason}"
    )
