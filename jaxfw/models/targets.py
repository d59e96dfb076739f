"""Which `_target_`s a model config may name, checked before anything is built.

A run directory's config.yaml may come from someone else (a download, a shared drive),
and Hydra's `instantiate` calls whatever a `_target_` names (`builtins.open`, `os.system`).
`check_model_targets` resolves every `_target_` without calling it and allows:

- `model._target_`: a Flax module class, a subclass of flax.linen.Module (or of
  flax.nnx.Module), from an installed package or the user's PYTHONPATH;
- a `_target_` nested anywhere below it (dicts, lists, `_args_`): a Flax module class,
  or an object of one of `NESTED_NAMESPACES` (activations, initializers, dtypes, optax
  transformations), file readers and writers excluded.

Nothing from the standard library is imported for the check (no Flax class lives there),
nor a module whose file would load from inside the run directory: code runs only from
what is installed on this machine.
"""

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import flax.linen as nn
from omegaconf import OmegaConf

from jaxfw.errors import UserError

# Values a model takes as arguments; none of these namespaces runs a subprocess or
# reaches the network, and their file readers/writers are excluded below.
NESTED_NAMESPACES = (
    "jax.nn",
    "jax.lax",
    "jax.numpy",
    "flax.linen",
    "flax.nnx",
    "optax",
    "jaxfw.models",
)
# An object's defining module must be in one of these packages: a namespace may re-export
# something else (e.g. `flax.linen.module.functools.partial` names functools.partial).
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "jaxfw")
# jnp.load unpickles with allow_pickle=True: a pickle shipped in the run directory would run.
_FILE_IO = {"load", "loadtxt", "genfromtxt", "fromfile", "save", "savez", "savez_compressed"}
_FLAGS = ("_partial_", "_recursive_")


def is_module_class(obj: Any) -> bool:
    """A Flax Linen or NNX module class (NNX counts only once flax.nnx is imported,
    which any subclass of it has done)."""
    if not isinstance(obj, type):
        return False
    nnx = sys.modules.get("flax.nnx")
    return issubclass(obj, nn.Module) or (nnx is not None and issubclass(obj, nnx.Module))


def check_model_targets(
    model_cfg: Any, source: str = "The config", run_dir: str | Path | None = None
) -> type:
    """The class `model._target_` names, after every `_target_` in `model_cfg` was
    resolved (imported, never called) and allowed. `source` names where the config
    came from in messages; modules loading from inside `run_dir` are refused."""
    config = _plain(model_cfg, source)
    if not isinstance(config, dict) or not config.get("_target_"):
        raise UserError(
            f"{source} names no model._target_; name a Flax module class, e.g. jaxfw.models.MLP."
        )
    top: type | None = None
    for path, node in _target_nodes(config, "model"):
        target = _checked_keys(node, path, source)
        obj = _resolve(target, path, source, run_dir)
        if path == "model":
            if not is_module_class(obj):
                raise UserError(
                    f"{source} names model._target_='{target}', which is not a Flax module "
                    "class; jaxfw only builds subclasses of flax.linen.Module (or "
                    "flax.nnx.Module) installed on this machine."
                )
            top = obj
        elif not (is_module_class(obj) or _allowed_nested(target, obj)):
            raise UserError(
                f"{source} names {path}._target_='{target}', which is neither a Flax module "
                f"class nor an object of {', '.join(NESTED_NAMESPACES)} (file I/O excluded)."
            )
    assert top is not None  # the first node visited is the config itself
    return top


def _plain(model_cfg: Any, source: str) -> Any:
    if not OmegaConf.is_config(model_cfg):
        return model_cfg
    try:  # check what instantiate would see: interpolations resolved
        return OmegaConf.to_container(model_cfg, resolve=True)
    except Exception as exc:  # a bad interpolation in a user's config
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{source} has a model config that cannot be resolved: {reason}.") from exc


def _target_nodes(node: Any, path: str) -> Iterator[tuple[str, dict]]:
    """Every dict with a `_target_`, parents first, with its path (model.layers[0])."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for key, value in node.items():
            yield from _target_nodes(value, f"{path}.{key}")
    elif isinstance(node, list | tuple):
        for index, value in enumerate(node):
            yield from _target_nodes(value, f"{path}[{index}]")


def _checked_keys(node: dict, path: str, source: str) -> str:
    """The node's target; Hydra's other keys only with the types Hydra means them to have,
    and no partial at the top (it would build a function, not a module)."""
    target = node["_target_"]
    if not isinstance(target, str) or not target.strip():
        raise UserError(
            f"{source} names {path}._target_={target!r}, which is not a dotted import path; "
            "name a class, e.g. jaxfw.models.MLP."
        )
    for flag in _FLAGS:
        if flag in node and not isinstance(node[flag], bool):
            raise UserError(
                f"{source} sets {path}.{flag}={node[flag]!r}, which is not allowed; use true or "
                "false."
            )
    if "_args_" in node and not isinstance(node["_args_"], list | tuple):
        raise UserError(
            f"{source} sets {path}._args_={node['_args_']!r}, which is not allowed; use a list."
        )
    if path == "model" and node.get("_partial_"):
        raise UserError(
            f"{source} sets model._partial_=true, which is not allowed for the model; remove it."
        )
    return target


def _resolve(target: str, path: str, source: str, run_dir: str | Path | None) -> Any:
    root = target.split(".")[0]
    if root in sys.stdlib_module_names or root == "__main__":
        return None  # no Flax class or allowed object lives there; import nothing
    if run_dir is not None and _loads_from_inside(target, Path(run_dir)):
        raise UserError(
            f"{source} names {path}._target_='{target}', whose code lies inside the run "
            f"directory {run_dir}; jaxfw only builds model classes installed on this machine."
        )
    try:
        return _locate(target)
    except Exception as exc:  # an import error, or any error raised by a user's module
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"{source} names {path}._target_='{target}', which cannot be imported ({reason})."
        ) from exc


def _locate(target: str) -> Any:
    """The object a dotted path names, importing modules as Hydra would, calling nothing."""
    parts = target.split(".")
    if not all(parts):
        raise ImportError(f"'{target}' is not a dotted path")
    obj: Any = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif isinstance(obj, ModuleType):
            obj = importlib.import_module(".".join(parts[: index + 1]))
        else:
            raise ImportError(f"'{'.'.join(parts[:index])}' has no attribute '{part}'")
    return obj


def _loads_from_inside(target: str, directory: Path) -> bool:
    """Whether importing `target` could run a file inside `directory` (when the directory
    is on sys.path, e.g. PYTHONPATH=. with runs/ below it). Finding the top-level module's
    location imports nothing; every deeper module lies below that location."""
    try:
        spec = importlib.util.find_spec(target.split(".")[0])
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = [Path(spec.origin)] if spec.origin and spec.has_location else []
    for base in spec.submodule_search_locations or []:
        parts = target.split(".")[1:]
        places += [Path(base, *parts[:depth]) for depth in range(len(parts) + 1)]
        places += [Path(base, *parts[:depth]).with_suffix(".py") for depth in range(1, len(parts))]
    directory = directory.resolve()
    return any(place.resolve().is_relative_to(directory) for place in places)


def _allowed_nested(target: str, obj: Any) -> bool:
    if not target.startswith(tuple(f"{space}." for space in NESTED_NAMESPACES)):
        return False
    parts = target.split(".")
    # Private and dunder names reach loaders and globals (jax.lax.__spec__.loader).
    if parts[-1] in _FILE_IO or any(part.startswith("_") for part in parts):
        return False
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return module.split(".")[0] in _PACKAGES
