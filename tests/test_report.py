"""jaxfw.report: metrics.json, PNG plots and a self-contained report.html, checked in a
real headless Chromium (CI installs /usr/bin/chromium; the browser test fails without it).
"""

import html
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image
from sklearn import metrics as skm

from jaxfw.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
CLASSIFICATION_PLOTS = {"training_curves", "confusion_matrix", "reliability", "roc", "pr"}
RUN_ID = "digits_mlp-20261127-052108-<d963de>&co"  # markup characters: must be escaped


def _history(steps: int = 100, every: int = 10, regression: bool = False) -> list[dict]:
    """Records as metrics.jsonl holds them: separate train and eval records per step."""
    records = []
    metric = "mae" if regression else "accuracy"
    for step in range(every, steps + 1, every):
        decay = math.exp(-step / 40)
        train = {
            "step": step,
            "train/loss": 0.1 + 2.0 * decay,
            "train/lr": 1e-3,
            "train/grad_norm": 1.0 + decay,
            f"train/{metric}": 1.0 - 0.8 * decay,
        }
        if step == 30:
            train["train/grad_norm"] = float("nan")  # non-finite values appear as NaN
            train["train/loss"] = float("inf")
        records.append(train)
        records.append(
            {"step": step, "eval/loss": 0.2 + 2.0 * decay, f"eval/{metric}": 0.95 - 0.8 * decay}
        )
    return records


def _run_json(seed: int = 0) -> dict:
    return {
        "run_id": RUN_ID,
        "seed": seed,
        "status": "completed",
        "git": {
            "commit": "257c6b1f5d2e22aa62db64e5f9d945c48471c313",
            "dirty": True,
            "branch": "main",
        },
        "packages": {"jax": "0.10.2", "flax": "0.12.8", "optax": "0.2.8", "jaxfw": "0.1.0"},
        "python": "3.11.7",
        "start_time": "2026-11-27T05:21:08.273+00:00",
        "end_time": "2026-11-27T05:21:10.190+00:00",
        "time_to_first_step_s": 1.49,
        "train_time_s": 1.9,
        "total_time_s": 4.13,
        "best": {"metric": "eval/accuracy", "mode": "max", "value": 0.97, "step": 90},
    }


def _base_document(task: str) -> dict:
    return {
        "run_dir": f"runs/digits_mlp/{RUN_ID}",
        "run_id": RUN_ID,
        "split": "test",
        "checkpoint": {"kind": "best", "step": 90},
        "task": task,
        "config": {
            "name": "digits_mlp",
            "seed": 0,
            "trainer": {"steps": 100, "batch_size": 64},
            "optimizer": {"name": "adam", "lr": 0.001},
        },
        "data_fingerprint": "0adcaf63085053919c74a20fc06109ecc8a3ba08b5fb08d1a68a5f9f6a4701f5",
        "data_findings": [
            {"severity": "warning", "message": "class 'b<i>' has 3x fewer examples than 'a'"},
            {"severity": "error", "message": "12 duplicate rows between train and test"},
            {"severity": "info", "message": "all 64 features are finite"},
        ],
        "run": _run_json(),
        "created": "2026-11-27T05:22:00+00:00",
    }


def classification_document(n_classes: int = 4, n: int = 400, seed: int = 0) -> dict:
    """A realistic document: softmax scores of a decent classifier, scored with sklearn."""
    rng = np.random.default_rng(seed)
    names = ["a", "b<i>", "c & d", "class_3", *[f"class_{i}" for i in range(4, n_classes)]]
    names = names[:n_classes]
    targets = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 3.0 * np.eye(n_classes)[targets]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    preds = probs.argmax(1)
    onehot = np.eye(n_classes)[targets]
    roc, pr = {}, {}
    for k, name in enumerate(names):
        fpr, tpr, _ = skm.roc_curve(onehot[:, k], probs[:, k])
        precision, recall, _ = skm.precision_recall_curve(onehot[:, k], probs[:, k])
        roc[name] = {
            "x": fpr.tolist(),
            "y": tpr.tolist(),
            "auc": float(skm.roc_auc_score(onehot[:, k], probs[:, k])),
        }
        pr[name] = {
            "x": recall.tolist(),
            "y": precision.tolist(),
            "ap": float(skm.average_precision_score(onehot[:, k], probs[:, k])),
        }
    confidence, correct = probs.max(1), preds == targets
    edges = np.linspace(0, 1, 11)
    bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, 9)
    count = np.bincount(bins, minlength=10)
    reliability = {
        "confidence": [
            float(confidence[bins == b].mean()) if count[b] else None for b in range(10)
        ],
        "accuracy": [float(correct[bins == b].mean()) if count[b] else None for b in range(10)],
        "count": count.tolist(),
        "edges": edges.tolist(),
    }
    ece = sum(
        abs(reliability["confidence"][b] - reliability["accuracy"][b]) * count[b] / n
        for b in range(10)
        if count[b]
    )
    precision, recall, f1, _ = skm.precision_recall_fscore_support(targets, preds)
    document = _base_document("classification")
    document.update(
        class_names=names,
        metrics={
            "accuracy": float(correct.mean()),
            "f1_macro": float(skm.f1_score(targets, preds, average="macro")),
            "roc_auc_ovr_macro": float(np.mean([c["auc"] for c in roc.values()])),
            "log_loss": float(skm.log_loss(targets, probs)),
            "ece": float(ece),
            "brier": float("nan"),  # non-finite: must become null in metrics.json
            "precision_per_class": precision.tolist(),
            "recall_per_class": recall.tolist(),
            "f1_per_class": f1.tolist(),
            "confusion_matrix": skm.confusion_matrix(targets, preds).tolist(),
        },
        curves={"roc": roc, "pr": pr, "reliability": reliability},
    )
    return document


def regression_document(n: int = 300, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    targets = rng.normal(10.0, 3.0, n)
    predictions = targets + rng.normal(0.0, 0.8, n)
    document = _base_document("regression")
    document.update(
        metrics={
            "mse": float(np.mean((targets - predictions) ** 2)),
            "mae": float(np.mean(np.abs(targets - predictions))),
            "r2": float(skm.r2_score(targets, predictions)),
        },
        curves={"residuals": {"predictions": predictions.tolist(), "targets": targets.tolist()}},
    )
    return document


def _strict_json(path: Path) -> dict:
    def reject(constant: str) -> None:
        raise AssertionError(f"{path.name} holds non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=reject)


def _check_png(path: Path) -> Image.Image:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    image = Image.open(path)
    image.load()
    assert image.format == "PNG"
    width, height = image.size
    assert 400 <= width <= 2000 and 300 <= height <= 2000, (path.name, image.size)
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20, f"{path.name} is blank"
    return image


def _check_html(path: Path, plots: set[str]) -> str:
    page = path.read_text(encoding="utf-8")
    assert len(re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)) == len(plots)
    assert html.escape(RUN_ID) in page and RUN_ID not in page
    assert "<script" not in page.lower()
    # Self-contained: no attribute loads anything except a data URI.
    assert not re.findall(r"""(?:src|href)\s*=\s*(?!["']?data:)""", page)
    return page


@pytest.fixture(scope="module")
def classification_report(tmp_path_factory) -> dict[str, Path]:
    report_dir = tmp_path_factory.mktemp("classification") / "report"
    return write_report(report_dir, classification_document(), _history())


def test_classification_report_files(classification_report):
    paths = classification_report
    assert set(paths) == {"metrics", "html", *CLASSIFICATION_PLOTS}
    saved = _strict_json(paths["metrics"])
    assert saved["run_id"] == RUN_ID and saved["metrics"]["brier"] is None
    assert (
        saved["metrics"]["confusion_matrix"]
        == classification_document()["metrics"]["confusion_matrix"]
    )
    for key in CLASSIFICATION_PLOTS:
        _check_png(paths[key])
    page = _check_html(paths["html"], CLASSIFICATION_PLOTS)
    assert html.escape("b<i>") in page and "b<i>" not in page
    for severity in ("error", "warning", "info"):
        assert f"<li class={severity}>" in page
    assert "257c6b1f5d2e22aa62db64e5f9d945c48471c313" in page and "<details>" in page


def test_regression_report_files(tmp_path):
    paths = write_report(tmp_path / "report", regression_document(), _history(regression=True))
    assert set(paths) == {"metrics", "html", "training_curves", "residuals"}
    assert _strict_json(paths["metrics"])["metrics"]["r2"] > 0.8
    _check_png(paths["residuals"])
    _check_png(paths["training_curves"])
    _check_html(paths["html"], {"training_curves", "residuals"})


def test_missing_optional_parts_still_give_a_report(tmp_path):
    document = classification_document()
    del document["curves"], document["class_names"], document["run"], document["config"]
    document["data_findings"] = []
    document["metrics"]["log_loss"] = np.float32("inf")  # NumPy and non-finite values
    paths = write_report(tmp_path / "a", document, [])
    assert set(paths) == {"metrics", "html", "confusion_matrix"}
    assert _strict_json(paths["metrics"])["metrics"]["log_loss"] is None
    _check_html(paths["html"], {"confusion_matrix"})

    bare = {"run_id": RUN_ID, "task": "regression", "metrics": {"mse": 0.5}}
    paths = write_report(tmp_path / "b", bare, [{"step": 1, "time": 0.0}])
    assert set(paths) == {"metrics", "html"}
    _check_html(paths["html"], set())


def test_report_renders_in_headless_chromium(classification_report, tmp_path):
    """Chromium loads report.html from disk (no network) and paints it; the screenshot shows
    the plots were decoded: it holds the confusion matrix's darkest cell colour.

    Why this check: without JS in the page, the DOM cannot tell whether an <img> decoded;
    the pixels can. Page chrome (CSS greys, finding colours) never uses the Blues colormap's
    top colour, while the confusion matrix's largest cell is filled with exactly that colour
    over thousands of pixels, so finding it proves an embedded PNG was decoded and drawn.
    Measured (Debian Chromium, 4 classes): 6,637 such pixels and 7,223 distinct colours;
    with every data URI corrupted: 0 such pixels but still ~2,000 colours (anti-aliased
    text), which is why the distinct-colour count is only a "page painted" sanity check.
    """
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` "
            "(.ci/run does); this test needs a real headless browser."
        )
    shot = tmp_path / "shot.png"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,2400",
        classification_report["html"].resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2400)
    colors = image.getcolors(maxcolors=1 << 22)
    assert len(colors) > 1000, f"screenshot has only {len(colors)} colours: plots not painted"
    darkest = np.array(colormaps["Blues"](1.0)[:3]) * 255
    pixels = np.asarray(image, dtype=np.int16)
    matches = int((np.abs(pixels - darkest).max(axis=-1) <= 4).sum())
    assert matches > 1000, f"confusion-matrix colour on {matches} pixels: images not drawn"
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
