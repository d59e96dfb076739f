"""Exported models without their code: `jaxfw.artifact.load(path)` -> an `Artifact` with
`.predict(inputs)`, `.predict_rows(rows)`, `.signature`, `.card`, `.reference`.

Written by `jaxfw-export` (jaxfw.export); the files are listed in `jaxfw.artifact.layout`.
Loading needs jax, numpy, flatbuffers and safetensors only.
"""

from jaxfw.artifact.errors import ArtifactError
from jaxfw.artifact.model import Artifact, load

__all__ = ["Artifact", "ArtifactError", "load"]
