"""Evaluate a run's checkpoint on a split and write its report (`jaxfw-eval`, and the
automatic evaluation at the end of training).

Each evaluation has its own directory, so none replaces another: training writes
report/ (test split, best checkpoint), `jaxfw-eval` writes eval/<split>-<checkpoint>/
(checkpoint as asked: best, latest or the step). The metrics.json written there holds
every metric of the task, the curves behind the plots, and where the numbers came from:
config, data fingerprint, checkpoint step, run metadata.
"""

import datetime
import json
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxfw.build import Parts, build_parts, load_run_config
from jaxfw.checkpoint import CHECKPOINT_DIR, Checkpointer, abstract_like
from jaxfw.errors import UserError
from jaxfw.evaluation.split import evaluate_split
from jaxfw.metrics import average_precision, roc_auc
from jaxfw.objects import objects_for_run
from jaxfw.observe import RUN_FILE, read_jsonl
from jaxfw.report import write_report
from jaxfw.report.bounds import ReportLimits, thin_curve
from jaxfw.state import TrainState

SPLITS = ("train", "val", "test")
REPORT_DIR = "report"  # the end-of-training evaluation
CURVE_POINTS = ReportLimits().curve_points
EVAL_DIR = "eval"  # jaxfw-eval's, one subdirectory per split and checkpoint


def _class_names(parts: Parts) -> list[str]:
    preprocessor = getattr(parts.data, "preprocessor", None)  # tables keep their labels
    names = getattr(preprocessor, "classes", None) or getattr(parts.data, "class_names", None)
    return [str(n) for n in names] if names else [str(i) for i in range(parts.data.num_classes)]


def _curves(evaluation: Any, class_names: list[str]) -> dict[str, Any]:
    curves: dict[str, Any] = {}
    stats = evaluation.stats
    if "ece_count" in stats:
        count = np.asarray(stats["ece_count"], float)
        seen = count > 0
        mean = lambda key: np.where(seen, np.asarray(stats[key]) / np.maximum(count, 1), np.nan)  # noqa: E731
        bins = len(count)
        curves["reliability"] = {
            "confidence": [
                None if not s else float(v) for s, v in zip(seen, mean("ece_conf_sum"), strict=True)
            ],
            "accuracy": [
                None if not s else float(v) for s, v in zip(seen, mean("ece_acc_sum"), strict=True)
            ],
            "count": count.astype(int).tolist(),
            "edges": np.linspace(0.0, 1.0, bins + 1).tolist(),
        }
    scores = evaluation.scores
    if scores is not None and len(scores.targets):
        # Binary: the positive class only; multiclass: one-vs-rest per class present.
        classes = [1] if scores.num_classes == 2 else range(scores.num_classes)
        roc, pr = {}, {}
        for index in classes:
            if not (scores.targets == index).any() or (scores.targets == index).all():
                continue
            # Thinned as the report draws them (lossless first): a curve has a point per
            # distinct score, ~6M points over 1,000 classes of 3,000 rows otherwise.
            fpr, tpr, _ = scores.roc_curve(index)
            fpr, tpr, _ = thin_curve(fpr, tpr, CURVE_POINTS)
            recall, precision, _ = scores.precision_recall_curve(index)
            recall, precision, _ = thin_curve(recall, precision, CURVE_POINTS)
            positive, score = scores.targets == index, scores.probabilities[:, index]
            name = class_names[index]
            roc[name] = {"x": fpr.tolist(), "y": tpr.tolist(), "auc": roc_auc(positive, score)}
            pr[name] = {
                "x": recall.tolist(),
                "y": precision.tolist(),
                "ap": average_precision(positive, score),
            }
        curves["roc"], curves["pr"] = roc, pr
    if evaluation.predictions is not None:
        curves["residuals"] = {
            "predictions": evaluation.predictions.tolist(),
            "targets": evaluation.targets.tolist(),
        }
    return curves


def evaluation_document(
    cfg: DictConfig,
    parts: Parts,
    state: TrainState,
    split: str,
    checkpoint: dict[str, Any],
    run_dir: Path,
) -> dict[str, Any]:
    """Every metric of `state` on `split`, with curves and provenance."""
    evaluation = evaluate_split(
        parts.steps.eval,
        parts.task,
        state,
        getattr(parts.data, split),
        cfg.trainer.eval_batch_size,
        parts.put_global,
        keep_scores=True,
    )
    run_file = run_dir / RUN_FILE
    run = json.loads(run_file.read_text()) if run_file.exists() else {}
    report_file = run_dir / "data_report.json"
    findings = (
        json.loads(report_file.read_text()).get("findings", []) if report_file.exists() else []
    )
    class_names = _class_names(parts) if cfg.task.name == "classification" else []
    return {
        "run_dir": str(run_dir),
        "run_id": run.get("run_id", ""),
        "split": split,
        "checkpoint": checkpoint,
        "task": cfg.task.name,
        "class_names": class_names,
        "metrics": evaluation.metrics,
        "curves": _curves(evaluation, class_names),
        "config": OmegaConf.to_container(cfg),
        "data_fingerprint": parts.data.fingerprint,
        "data_findings": findings,
        "run": run,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_evaluation(
    run_dir: Path, document: dict[str, Any], directory: str = REPORT_DIR
) -> dict[str, Path]:
    """Write the report into <run_dir>/<directory>/; an OSError (read-only run directory)
    is left to the caller, which has the metrics already."""
    metrics_file = run_dir / "metrics.jsonl"
    history = read_jsonl(metrics_file) if metrics_file.exists() else []
    return write_report(run_dir / directory, document, history)


def eval_directory(split: str, checkpoint: str) -> str:
    """jaxfw-eval's report directory, relative to the run: eval/val-best, eval/test-1500."""
    if checkpoint.isdigit():
        checkpoint = str(int(checkpoint))  # 0150 and 150 are the same checkpoint
    return f"{EVAL_DIR}/{split}-{checkpoint}"


def pick_step(checkpointer: Checkpointer, which: str) -> tuple[str, int]:
    """(kind, step) of `which` (best, latest or a saved step's number) among the saved."""
    steps = checkpointer.steps()
    if not steps:
        raise UserError(f"No checkpoint in {checkpointer.directory}.")
    if which == "latest":
        return "latest", steps[-1]
    if which == "best":
        best = checkpointer.best_step()
        return ("best", best) if best is not None else ("latest", steps[-1])
    if which.isdigit() and int(which) in steps:
        return "step", int(which)
    raise UserError(
        f"checkpoint={which} is not best, latest or a saved step; saved steps: "
        f"{', '.join(map(str, steps))}."
    )


def open_run_checkpoint(
    run_dir: str | Path,
    which: str = "best",
    model: Any = None,
    data: Any = None,
    call: str = "jaxfw.evaluate",
) -> tuple[DictConfig, Checkpointer, str, int]:
    """(config, read-only checkpointer, kind, step) of checkpoint `which` (best, latest or a
    step) of a run directory that may come from elsewhere: its config's model `_target_`s
    are checked before anything is built. A run trained on Python objects needs them again
    (`model`, `data`; `call` names the function in the message)."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir, model, data, call)
    checkpointer = Checkpointer(
        run_dir / CHECKPOINT_DIR,
        metric=cfg.task.best_metric,
        mode=cfg.task.best_mode,
        read_only=True,
    )
    kind, step = pick_step(checkpointer, which)
    return cfg, checkpointer, kind, step


def evaluate_checkpoint(
    run_dir: str | Path,
    split: str = "test",
    checkpoint: str = "best",
    *,
    model: Any = None,
    data: Any = None,
) -> dict:
    """Every metric of a finished (or running) run's checkpoint on `split`; writes nothing.
    A run trained on objects (`jaxfw.train(cfg, model=..., data=...)`) needs them again."""
    run_dir = Path(run_dir)
    if split not in SPLITS:
        raise UserError(f"split={split} is not one of {', '.join(SPLITS)}.")
    cfg, checkpointer, kind, step = open_run_checkpoint(run_dir, checkpoint, model, data)
    parts = build_parts(cfg, objects_for_run(cfg, run_dir, model, data))
    state = checkpointer.restore_state(abstract_like(parts.init_state()), step)
    return evaluation_document(cfg, parts, state, split, {"kind": kind, "step": step}, run_dir)


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    checkpoint: str = "best",
    *,
    model: Any = None,
    data: Any = None,
) -> dict:
    """Evaluate a run's checkpoint and write <run_dir>/eval/<split>-<checkpoint>/ (the
    document's "paths" say where); training's own report/ is left as it is."""
    document = evaluate_checkpoint(run_dir, split, checkpoint, model=model, data=data)
    paths = write_evaluation(Path(run_dir), document, eval_directory(split, checkpoint))
    document["paths"] = {k: str(v) for k, v in paths.items()}
    return document
