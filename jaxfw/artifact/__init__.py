"""Exported models without their code: `jaxfw.artifact.load(path)` -> an `Artifact` with
`.predict(inputs)`, `.predict_rows(rows)`, `.signature`, `.card`, `.reference`.

Written by `jaxfw-export` (jaxfw.export); the files are listed in `jaxfw.artifact.layout`.
Loading needs jax, numpy, flatbuffers and safetensors only.
"""

from typing import Any

from jaxfw.artifact.errors import ArtifactError

__all__ = ["Artifact", "ArtifactError", "load"]


def __getattr__(name: str) -> Any:
    # Lazy: the registry and a server's argument checks read the format modules (manifest,
    # layout) without starting JAX.
    if name in ("Artifact", "load"):
        from jaxfw.artifact import model  # lazily: loading an artifact starts JAX

        return getattr(model, name)
    raise AttributeError(f"module 'jaxfw.artifact' has no attribute {name!r}")
