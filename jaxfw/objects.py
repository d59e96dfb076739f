"""Python objects in place of the config's model or data: `jaxfw.train(cfg, model=...,
data=...)` from a notebook, where the model is defined in a cell and the data is arrays
or a DataFrame in memory.

The object replaces the config's `model` / `data` section, and config.yaml records what
it was instead: the model's class and a fingerprint (`model: {_object_: ..., fingerprint:
...}`), the data's kind and fingerprint (`data.source: object`, `data.object: {...}`).
Those enter the config identity, so running the same notebook cell again resumes the
unfinished run of the same objects (trainer.resume=auto) or starts an identical new one,
as the CLI does. Evaluating or exporting such a run later needs the same objects again
(`jaxfw.evaluate(run_dir, model=..., data=...)`); its fingerprints are checked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import nnx
from omegaconf import DictConfig, OmegaConf

from jaxfw.data import DataBundle
from jaxfw.data.loading.objects import OBJECT_SOURCE, describe, load_objects
from jaxfw.errors import UserError
from jaxfw.models import Model, ModelFns, NnxModelFns

OBJECT_KEY = "_object_"  # model: {_object_: "<module>.<class>", fingerprint: ...}


@dataclass(frozen=True)
class Objects:
    """The objects a run computes with in place of building them from its config."""

    model: Model | None = None
    data: DataBundle | None = None


def class_name(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def model_adapter(model: Any) -> Model:
    if isinstance(model, nn.Module):
        return ModelFns(model)
    if isinstance(model, nnx.Module):
        return NnxModelFns.from_instance(model)
    raise UserError(
        f"model={class_name(model)} is not a Flax module; pass an instance of a "
        "flax.linen.Module or flax.nnx.Module subclass."
    )


def model_fingerprint(model: Any) -> str:
    """Linen: the module's hyper-parameters (its repr); its parameters come from the seed.
    NNX: the class and the initial parameter values the instance holds."""
    digest = hashlib.sha256(class_name(model).encode())
    if isinstance(model, nn.Module):
        digest.update(repr(model).encode())
    else:
        _, _, values = nnx.split(model, nnx.RngState, ...)  # random streams are reseeded
        for path, leaf in jax.tree_util.tree_leaves_with_path(values):
            value = np.asarray(leaf)
            digest.update(f"{jax.tree_util.keystr(path)}{value.dtype}{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


def take_objects(cfg: DictConfig, model: Any = None, data: Any = None) -> Objects:
    """Build the objects' adapters and record them in the (resolved, plain) `cfg`."""
    adapter = bundle = None
    if model is not None:
        adapter = model_adapter(model)
        cfg.model = {OBJECT_KEY: class_name(model), "fingerprint": model_fingerprint(model)}
    if data is not None:
        bundle = load_objects(data, cfg.data, cfg.task.name, cfg.seed)
        cfg.data.source = OBJECT_SOURCE
        cfg.data.path = None
        with_object = OmegaConf.to_container(cfg.data)
        with_object["object"] = {
            "kind": describe(data),
            "type": class_name(data),
            "fingerprint": bundle.fingerprint,
        }
        cfg.data = with_object
    return Objects(adapter, bundle)


def model_object(cfg: Any) -> str | None:
    """The class a run's model object was (None: the run built its model from `_target_`)."""
    model = cfg.get("model")
    return model.get(OBJECT_KEY) if isinstance(model, DictConfig | dict) else None


def data_object(cfg: Any) -> bool:
    return cfg.get("data", {}).get("source") == OBJECT_SOURCE


def require_objects(cfg: Any, run_dir: Any, model: Any, data: Any, call: str) -> None:
    """One sentence when a run trained on objects that this call did not pass again."""
    name = model_object(cfg)
    if name is not None and model is None:
        raise UserError(
            f"Run '{run_dir}' trained a model passed from Python ({name}); pass the same "
            f"module again: {call}(run_dir, model=..., data=...)."
        )
    if data_object(cfg) and data is None:
        raise UserError(
            f"Run '{run_dir}' trained on data passed from Python; pass the same data again: "
            f"{call}(run_dir, model=..., data=...)."
        )


def objects_for_run(cfg: DictConfig, run_dir: Any, model: Any = None, data: Any = None) -> Objects:
    """The objects passed again to evaluate or export a run that trained on objects,
    checked against what its config.yaml recorded."""
    recorded = model_object(cfg)
    before = cfg.data.get("object", {}).get("fingerprint") if data_object(cfg) else None
    objects = take_objects(cfg, model, data)
    if model is not None and recorded is not None and recorded != class_name(model):
        raise UserError(
            f"Run '{run_dir}' trained a {recorded}; the model passed is a {class_name(model)}."
        )
    if objects.data is not None and before is not None and before != objects.data.fingerprint:
        raise UserError(
            f"The data passed is not the data run '{run_dir}' trained on (fingerprint "
            f"{objects.data.fingerprint[:12]}, the run recorded {before[:12]})."
        )
    return objects
