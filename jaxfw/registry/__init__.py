"""The model registry: `Registry` in Python, `jaxfw-registry` on the command line.

Standard library and the artifact's format modules only (no JAX), so a serving process can
import it to resolve a model reference; `Registry.load` starts JAX when called.
"""

from jaxfw.registry.names import Ref, parse_ref
from jaxfw.registry.registry import Registration, Registry

__all__ = ["Ref", "Registration", "Registry", "parse_ref"]
