"""`export_run`: a run directory's checkpoint -> a self-contained artifact directory.

The run's config is checked (only installed model classes are built), the checkpoint is
restored and verified like `jaxfw-eval`'s, the data is loaded again to prove it is the data
the run trained on (same fingerprint) and to take its preprocessing and drift baseline.
Everything is written into a temporary directory beside the destination and renamed into
place at the end: an interrupted export leaves no half artifact, and an existing
destination is never touched.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from omegaconf import OmegaConf

import jaxfw
from jaxfw.artifact import layout
from jaxfw.artifact.manifest import write_manifest
from jaxfw.artifact.preprocessing import features_spec
from jaxfw.artifact.weights import save_weights
from jaxfw.build import Parts, build_parts
from jaxfw.checkpoint import abstract_like
from jaxfw.durable import fsync_dir, fsync_file
from jaxfw.errors import UserError
from jaxfw.evaluation.run import REPORT_DIR, open_run_checkpoint
from jaxfw.evaluation.split import evaluate_split
from jaxfw.export.card import model_card_text
from jaxfw.export.program import (
    KNOWN_PLATFORMS,
    PLATFORMS,
    export_program,
    portable,
    predict_function,
)
from jaxfw.export.reference import build_reference
from jaxfw.json_values import to_jsonable
from jaxfw.objects import objects_for_run
from jaxfw.observe import RUN_FILE
from jaxfw.tasks import Regression

EXPORT_DIR = "export"  # default destination: <run_dir>/export/<kind>-<step>


def check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(str(p).strip().lower() for p in platforms))
    bad = [p for p in chosen if p not in KNOWN_PLATFORMS]
    if bad or not chosen:
        raise UserError(
            f"export.platforms={list(platforms)} names {bad[0] if bad else 'no platform'!r}; "
            f"choose from {', '.join(KNOWN_PLATFORMS)}."
        )
    return chosen


def _outputs(task: str, num_classes: int, max_length: int | None) -> list[dict[str, Any]]:
    if task == "classification":
        return [
            {"name": "logits", "dtype": "float32", "shape": [-1, num_classes]},
            {"name": "probabilities", "dtype": "float32", "shape": [-1, num_classes]},
            {"name": "predicted_class", "dtype": "int32", "shape": [-1]},
            {"name": "predicted_label", "dtype": "string", "shape": [-1], "host": True},
        ]
    if task == "regression":
        return [{"name": "prediction", "dtype": "float32", "shape": [-1]}]
    return [
        {
            "name": "logits",
            "dtype": "float32",
            "shape": [-1, -1, num_classes],
            "description": "next-byte logits at every position",
        }
    ]


def _inputs_and_preprocessing(parts: Parts, task: str) -> tuple[list, dict, dict]:
    """(signature inputs, the model's own input spec, preprocessing.json)."""
    data = parts.data
    shape = list(data.input_shape)
    if task == "lm":
        length = int(data.train.inputs.shape[1])
        spec = {"name": "tokens", "dtype": "int32", "shape": [-1, -1], "max_length": length}
        model_input = {"dtype": "int32", "shape": [-1, -1], "max_length": length}
        return [spec], model_input, {"kind": "tokens", "vocab_size": data.num_classes}
    model_input = {"dtype": "float32", "shape": [-1, *shape]}
    if data.preprocessor is not None:  # a table: raw columns in
        table = json.loads(data.preprocessor.to_json())
        inputs = [
            {
                "name": column["name"],
                "shape": [-1],
                "dtype": "float64" if column["kind"] == "numeric" else "string",
                "kind": column["kind"],
            }
            for column in table["columns"]
        ]
        return inputs, model_input, {"kind": "table", "table": table}
    transform = data.transform
    spec = features_spec(shape, transform.scale, transform.mean, transform.std, data.feature_names)
    inputs = [{"name": "inputs", "dtype": "float32", "shape": [-1, *shape]}]
    if data.feature_names:
        inputs[0]["feature_names"] = list(data.feature_names)
    return inputs, model_input, spec


def _plain_label(label: Any) -> Any:
    """A class label as JSON keeps it: numpy scalars as Python ones, others as text."""
    label = label.item() if isinstance(label, np.generic) else label
    return label if isinstance(label, (str, int, float, bool)) else str(label)


def _class_labels(parts: Parts, task: str, given: Sequence[Any] | None = None) -> list:
    if task != "classification":
        return []
    if given is not None:
        if len(given) != parts.data.num_classes:
            raise UserError(
                f"class_labels has {len(given)} labels but the model predicts "
                f"{parts.data.num_classes} classes."
            )
        return [_plain_label(c) for c in given]
    preprocessor = parts.data.preprocessor
    if preprocessor is not None and preprocessor.classes:
        return [_plain_label(c) for c in preprocessor.classes]
    return list(range(parts.data.num_classes))


def _test_metrics(run_dir: Path, parts: Parts, state: Any, step: int, cfg: Any) -> dict[str, float]:
    """The checkpoint's scalar test metrics: training's report when it scored this very
    checkpoint, else computed now."""
    report = run_dir / REPORT_DIR / "metrics.json"
    if report.exists():
        document = json.loads(report.read_text())
        if document.get("checkpoint", {}).get("step") == step:
            metrics = document["metrics"]
            return {
                f"test/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))
            }
    evaluation = evaluate_split(
        parts.steps.eval,
        parts.task,
        state,
        parts.data.test,
        cfg.trainer.eval_batch_size,
        parts.put_global,
        keep_scores=True,
    )
    return {
        f"test/{k}": float(v) for k, v in evaluation.metrics.items() if isinstance(v, (int, float))
    }


def _weights(state: Any) -> dict[str, Any]:
    variables = {"params": state.params, **state.model_state}
    return jax.tree.map(np.asarray, jax.device_get(nn.meta.unbox(variables)))


def export_run(
    run_dir: str | Path,
    checkpoint: str = "best",
    out: str | Path | None = None,
    platforms: Sequence[str] = PLATFORMS,
    *,
    model: Any = None,
    data: Any = None,
    class_labels: Sequence[Any] | None = None,
) -> Path:
    """Export checkpoint `checkpoint` (best, latest or a step) of the run in `run_dir` into
    `out` (default <run_dir>/export/<kind>-<step>); returns the artifact's path. A run
    trained on objects (`jaxfw.train(cfg, model=..., data=...)`) needs them again.
    `class_labels` names the classes 0..C-1 where the data did not (jaxfw.sklearn's
    `classes_`); the artifact's `predicted_label` is then one of them."""
    run_dir = Path(run_dir)
    platforms = check_platforms(platforms)
    cfg, checkpointer, kind, step = open_run_checkpoint(
        run_dir, checkpoint, model, data, call="jaxfw.export_run"
    )
    out = Path(out) if out is not None else run_dir / EXPORT_DIR / f"{kind}-{step}"
    if out.exists():
        raise UserError(f"{out} already exists; choose another out= or remove it first.")
    run_file = run_dir / RUN_FILE
    run = json.loads(run_file.read_text()) if run_file.exists() else {}

    parts = build_parts(cfg, objects_for_run(cfg, run_dir, model, data))
    recorded = run.get("data_fingerprint")
    if recorded and recorded != parts.data.fingerprint:
        raise UserError(
            f"The data named by {run_dir}/config.yaml has changed since training (fingerprint "
            f"{parts.data.fingerprint[:12]}, the run recorded {recorded[:12]}); the artifact's "
            "preprocessing and drift baseline must come from the training data."
        )
    state = checkpointer.restore_state(abstract_like(parts.init_state()), step)
    task = cfg.task.name
    weights = _weights(state)
    model = portable(parts.model, platforms)
    regression = parts.task if isinstance(parts.task, Regression) else Regression()
    predict = predict_function(model, task, regression.target_mean, regression.target_std)
    inputs, model_input, preprocessing = _inputs_and_preprocessing(parts, task)
    max_length = model_input.get("max_length")
    exported = export_program(
        predict, weights, model_input["shape"][1:], model_input["dtype"], platforms, max_length
    )
    signature = {
        "format": "jaxfw.signature/v1",
        "task": task,
        "inputs": inputs,
        "model_input": model_input,
        "outputs": _outputs(task, parts.data.num_classes, max_length),
        "class_labels": _class_labels(parts, task, class_labels),
        "input_kind": preprocessing["kind"],
    }
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    card = {
        "format": "jaxfw.card/v1",
        "task": task,
        "run_id": run.get("run_id", ""),
        "run_dir": str(run_dir.resolve()),
        "run_name": cfg.get("name", run_dir.name),
        "checkpoint": {"kind": kind, "step": step},
        "metrics": _test_metrics(run_dir, parts, state, step, cfg),
        "data_fingerprint": parts.data.fingerprint,
        "data": parts.data.summary(),
        "config": OmegaConf.to_container(cfg),
        "git": run.get("git") or {"commit": None, "dirty": None},
        "packages": run.get("packages", {}),
        "seed": cfg.get("seed"),
        "run_started_at": run.get("start_time"),
        "run_finished_at": run.get("end_time"),
        "exported_at": now,
        "jax_version": jax.__version__,
        "jaxfw_version": jaxfw.__version__,
        "platforms": list(platforms),
        "parameter_count": int(sum(np.size(a) for a in jax.tree.leaves(weights["params"]))),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / layout.MODEL).write_bytes(exported.serialize())
        save_weights(weights, staging / layout.WEIGHTS)
        for name, document in (
            (layout.SIGNATURE, signature),
            (layout.PREPROCESSING, preprocessing),
            (layout.REFERENCE, build_reference(parts.data)),
            (layout.CARD, card),
        ):
            (staging / name).write_text(json.dumps(to_jsonable(document), indent=1) + "\n")
        (staging / layout.CARD_TEXT).write_text(model_card_text(card, signature))
        write_manifest(staging, jax_version=jax.__version__, exported_at=now)
        umask = os.umask(0)
        os.umask(umask)
        for path in staging.iterdir():
            path.chmod(0o666 & ~umask)  # mkdtemp and safetensors create owner-only files
            fsync_file(path)
        staging.chmod(0o777 & ~umask)
        os.rename(staging, out)  # atomic: the artifact appears whole or not at all
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
