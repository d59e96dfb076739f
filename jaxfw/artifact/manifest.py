"""manifest.json: the sha256 of every file of an artifact, checked before anything is read.

The manifest proves integrity (nothing changed since export), not trust: model.jaxexport
is a compiled program, so load artifacts from places you trust. `content_hash` -- the
sha256 of the manifest's file list -- names an artifact's content independently of where
it lies; the registry stores versions by it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from jaxfw.artifact.errors import ArtifactError
from jaxfw.artifact.layout import CONTENT_FILES, FORMAT, MANIFEST

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, **fields: Any) -> dict[str, Any]:
    """Hash every content file of `directory` into its manifest.json (written last, so a
    directory with a manifest is complete); `fields` add e.g. the JAX version."""
    files = {name: file_sha256(directory / name) for name in CONTENT_FILES}
    manifest = {"format": FORMAT, **fields, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of `directory`, or an ArtifactError saying why it is not an artifact."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(
            f"'{directory}' is not a directory; an artifact is the directory jaxfw-export writes."
        )
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(
            f"'{directory}' is not a jaxfw artifact: it has no {MANIFEST} (jaxfw-export "
            "writes one)."
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} cannot be read as JSON ({exc}).") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ArtifactError(f"{path} has format {found!r}; this jaxfw reads {FORMAT!r}.")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(CONTENT_FILES):
        listed = sorted(files) if isinstance(files, dict) else []
        raise ArtifactError(
            f"{path} lists the files {', '.join(listed) or 'none'}; a {FORMAT} artifact has "
            f"{', '.join(sorted(CONTENT_FILES))}."
        )
    return manifest


def verify_artifact(directory: str | Path) -> dict[str, Any]:
    """The manifest, once every file it lists is present and has its recorded sha256 and
    no other file lies beside them; else an ArtifactError naming the first file that
    differs."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    for name, expected in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; the artifact's manifest lists it.")
        if file_sha256(path) != expected:
            raise ArtifactError(
                f"{path} changed after export (its sha256 differs from manifest.json's); "
                "re-export the model or restore the file."
            )
    extra = sorted(
        p.name
        for p in directory.iterdir()
        if p.name not in manifest["files"] and p.name != MANIFEST and not p.name.startswith(".")
    )
    if extra:
        raise ArtifactError(
            f"{directory / extra[0]} is not listed in the artifact's manifest.json; an "
            "artifact holds only the files jaxfw-export wrote."
        )
    return manifest


def content_hash(manifest: dict[str, Any]) -> str:
    """sha256 over the file names and their hashes: the same for identical content."""
    listing = "\n".join(f"{name} {sha}" for name, sha in sorted(manifest["files"].items()))
    return hashlib.sha256(listing.encode()).hexdigest()
