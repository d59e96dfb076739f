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

from jaxfw.metrics import precision_recall_curve, roc_curve
from jaxfw.report import ReportLimits, write_report
from jaxfw.report.bounds import (
    class_errors,
    confusion_view,
    curves_view,
    macro_curve,
    most_confused,
    thin_curve,
)
from jaxfw.report.plots import confusion_figure, curves_figure

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
            "brier": float("nan"),  # non-finite: "nan" in metrics.json (strict JSON)
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
    assert saved["run_id"] == RUN_ID and saved["metrics"]["brier"] == "nan"
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
    assert _strict_json(paths["metrics"])["metrics"]["log_loss"] == "inf"  # the sign kept
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


# --- Bounded work: big reports are aggregated, small ones unchanged ---------------------


def _page_section(page: str, heading: str) -> str:
    start = page.index(f"<h2>{heading}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start : end if end > 0 else None]


def _table_rows(section: str) -> int:
    """Body rows: a class name cell followed by value cells (the header has no <td>)."""
    return len(re.findall(r"</th><td", section))


def test_most_confused_ranks_by_errors_and_other_sums_the_rest():
    counts = np.diag([50, 40, 30, 20, 10]).astype(np.int64)
    counts[0, 1] = 7  # class 0 -> 1: one false negative of 0, one false positive of 1
    counts[3, 4] = 5
    counts[4, 3] = 1
    counts[2, 0] = 2
    # errors (FN + FP): 0: 7+2=9, 1: 7, 2: 2, 3: 5+1=6, 4: 1+5=6 (tie: lower index first)
    assert class_errors(counts).tolist() == [9, 7, 2, 6, 6]
    assert most_confused(counts, 4).tolist() == [0, 1, 3, 4]

    names = ["a", "b", "c", "d", "e"]
    whole = confusion_view(counts, names, max_classes=5, top_k=2)
    assert not whole.other and whole.labels == names and whole.note() == ""
    assert np.array_equal(whole.counts, counts)

    view = confusion_view(counts, names, max_classes=4, top_k=2)
    assert view.other and view.labels == ["a", "b", "other (3)"]
    assert view.counts.tolist() == [
        [50, 7, 0],  # a: a, b, {c, d, e}
        [0, 40, 0],
        [2, 0, 30 + 20 + 10 + 5 + 1],  # c -> a; c, d, e among themselves
    ]
    assert view.counts.sum() == counts.sum()
    assert (view.errors_shown, view.errors_total) == (7, 15)
    assert "2 of 5 classes" in view.note() and "other 3 classes" in view.note()


def _on_path(px: np.ndarray, py: np.ndarray, x: np.ndarray, y: np.ndarray) -> bool:
    """Whether every point (px, py) lies on the polyline through (x, y)."""
    ax, ay, bx, by = x[:-1], y[:-1], x[1:], y[1:]
    px, py = px[:, None], py[:, None]
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    inside = (np.minimum(ax, bx) - 1e-12 <= px) & (px <= np.maximum(ax, bx) + 1e-12)
    inside &= (np.minimum(ay, by) - 1e-12 <= py) & (py <= np.maximum(ay, by) + 1e-12)
    return bool(((np.abs(cross) <= 1e-12) & inside).any(axis=1).all())


def _steps_post(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices matplotlib draws for drawstyle="steps-post"."""
    return np.r_[np.repeat(x, 2)[1:], x[-1]][:-1], np.repeat(y, 2)[:-1]


def test_thin_curve_is_lossless_on_runs_and_bounded_otherwise():
    rng = np.random.default_rng(0)
    # A rare class (3 of 3,000 rows): one point per distinct score, nearly all of them in
    # horizontal (ROC) or vertical (PR) runs.
    positive = np.zeros(3000, bool)
    positive[rng.choice(3000, 3, replace=False)] = True
    score = rng.random(3000)
    fpr, tpr, _ = roc_curve(positive, score)
    x, y, lossy = thin_curve(fpr, tpr, 50)
    assert not lossy and len(x) <= 8 and (x[0], y[0], x[-1], y[-1]) == (0, 0, 1, 1)
    assert _on_path(fpr, tpr, x, y)  # every old point on the new line: the same drawing
    assert not _on_path(fpr, tpr, x[::2], y[::2])  # (the check can fail)
    recall, precision, _ = precision_recall_curve(positive, score)
    x, y, lossy = thin_curve(recall, precision, 50)
    assert not lossy and len(x) <= 8
    assert _on_path(*_steps_post(recall, precision), *_steps_post(x, y))

    # No runs to merge (a random walk): evenly spaced along the length, ends kept.
    walk_x = np.cumsum(rng.random(5000))
    walk_y = np.cumsum(rng.normal(size=5000))
    x, y, lossy = thin_curve(walk_x, walk_y, 100)
    assert lossy and len(x) <= 100 and len(x) > 90
    assert (x[0], x[-1], y[0], y[-1]) == (walk_x[0], walk_x[-1], walk_y[0], walk_y[-1])
    assert set(x) <= set(walk_x) and np.all(np.diff(x) > 0)

    short = [0.0, 0.5, 0.5, 1.0]  # at most max_points: returned as is
    assert thin_curve(short, short, 4)[0].tolist() == short


def test_macro_curve_averages_linear_and_step_curves():
    a = (np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    b = (np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]))
    grid, mean = macro_curve([a, b], points=5, step=False)
    assert np.allclose(mean, (grid + 1.0) / 2)
    pr = (np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.8, 0.4]))
    _, mean = macro_curve([pr], points=5, step=True)  # x = 0, .25, .5, .75, 1
    assert np.allclose(mean, [1.0, 1.0, 0.8, 0.8, 0.4])


@pytest.fixture(scope="module")
def large_report(tmp_path_factory) -> tuple[dict, dict[str, Path], ReportLimits]:
    """60 classes: above every default cap except the curve points, lowered to 12."""
    document = classification_document(n_classes=60, n=1200, seed=1)
    document["data_findings"] = [
        {"severity": "info", "message": f"info {i}"} for i in range(150)
    ] + [{"severity": "error", "message": "the one error"}]
    limits = ReportLimits(curve_points=12)
    report_dir = tmp_path_factory.mktemp("large") / "report"
    return document, write_report(report_dir, document, _history(), limits), limits


def test_large_confusion_matrix_is_aggregated(large_report):
    document, paths, limits = large_report
    matrix = np.array(document["metrics"]["confusion_matrix"])
    # metrics.json keeps every count; the figure only the top classes and "other".
    assert _strict_json(paths["metrics"])["metrics"]["confusion_matrix"] == matrix.tolist()
    view = confusion_view(matrix, document["class_names"], 30, limits.matrix_top_k)
    assert view.counts.shape == (limits.matrix_top_k + 1,) * 2
    assert view.counts.sum() == matrix.sum()
    top = most_confused(matrix, limits.matrix_top_k)
    errors = class_errors(matrix)
    assert errors[top].min() >= np.delete(errors, top).max()
    figure = confusion_figure(view, annotate_cells=30)
    ax = figure.axes[0]
    assert len(ax.texts) == (limits.matrix_top_k + 1) ** 2  # one label per drawn cell
    labels = [tick.get_text() for tick in ax.get_xticklabels()]
    assert labels == [document["class_names"][i] for i in top] + ["other (40)"]
    assert len(confusion_figure(view, annotate_cells=20).axes[0].texts) == 0
    _check_png(paths["confusion_matrix"])

    page = _check_html(paths["html"], CLASSIFICATION_PLOTS)
    assert "20 of 60 classes drawn: those with the most errors" in page
    assert "The other 40 classes are summed into &#x27;other&#x27;" in page


def test_large_report_curves_tables_and_findings_are_bounded(large_report):
    document, paths, limits = large_report
    saved = _strict_json(paths["metrics"])
    for kind, score in (("roc", "auc"), ("pr", "ap")):
        curves = saved["curves"][kind]
        assert set(curves) == set(document["curves"][kind])  # every class, each bounded
        assert max(len(c["x"]) for c in document["curves"][kind].values()) > 12
        assert all(len(c["x"]) == len(c["y"]) <= 12 for c in curves.values())
        assert all(c[score] == document["curves"][kind][n][score] for n, c in curves.items())
        view = curves_view(curves, score, limits, step=score == "ap")
        assert len(view.drawn) == limits.curve_classes and view.macro is not None
        lowest = sorted(c[score] for c in curves.values())[: limits.curve_classes]
        assert sorted(value for _, _, value in view.drawn.values()) == lowest
        ax = curves_figure(view, title=kind, xlabel="x", ylabel="y", diagonal=False).axes[0]
        assert len(ax.lines) == limits.curve_classes + 1
        assert max(len(line.get_xdata()) for line in ax.lines) <= limits.curve_points
        _check_png(paths[kind])

    page = paths["html"].read_text(encoding="utf-8")
    assert "the 10 classes with the lowest AUC; the other 50 are not drawn" in page
    assert "the 10 classes with the lowest AP; the other 50 are not drawn" in page
    assert "curves thinned to at most 12 points" in page
    per_class = _page_section(page, "Per class")
    assert _table_rows(per_class) == limits.table_classes
    assert "The 30 of 60 classes with the most errors" in per_class
    matrix = np.array(document["metrics"]["confusion_matrix"])
    first = document["class_names"][most_confused(matrix, 1)[0]]
    assert per_class.index(f"<tr><th>{html.escape(first)}</th>") < per_class.index("<td")
    findings = _page_section(page, "Data findings")
    assert findings.count("<li class=") == limits.findings
    assert findings.index("the one error") < findings.index("info 0")
    assert "100 of 151 findings, errors first" in findings
    assert len(_strict_json(paths["metrics"])["data_findings"]) == 151


def test_small_report_is_drawn_whole(tmp_path):
    """10 classes: under every cap, so every label, row and curve point is there."""
    document = classification_document(n_classes=10, n=400)
    paths = write_report(tmp_path / "report", document, _history())
    saved = _strict_json(paths["metrics"])
    assert saved["curves"]["roc"] == document["curves"]["roc"]
    assert saved["curves"]["pr"] == document["curves"]["pr"]
    names = document["class_names"]
    view = confusion_view(document["metrics"]["confusion_matrix"], names, 30, 20)
    assert not view.other
    ax = confusion_figure(view, annotate_cells=30).axes[0]
    assert len(ax.texts) == 100
    assert [t.get_text() for t in ax.texts] == [str(v) for row in view.counts for v in row]
    assert [tick.get_text() for tick in ax.get_yticklabels()] == names
    roc = curves_view(document["curves"]["roc"], "auc", ReportLimits(), step=False)
    assert list(roc.drawn) == names and roc.macro is None
    assert all(
        len(x) == len(document["curves"]["roc"][n]["x"]) for n, (x, _, _) in roc.drawn.items()
    )

    page = paths["html"].read_text(encoding="utf-8")
    assert "class=note" not in page  # nothing left out, nothing to say
    per_class = _page_section(page, "Per class")
    assert _table_rows(per_class) == 10
    assert all(f"<tr><th>{html.escape(name)}</th>" in per_class for name in names)
    assert "Confusion matrix</figcaption>" in page


def test_residuals_and_history_are_bounded(tmp_path):
    document = regression_document(n=300)
    history = _history(steps=3000, every=1)
    limits = ReportLimits(residual_points=100, history_points=50)
    paths = write_report(tmp_path / "report", document, history, limits)
    residuals = _strict_json(paths["metrics"])["curves"]["residuals"]
    assert residuals["rows"] == 300 and len(residuals["predictions"]) == 100
    assert residuals["predictions"][0] == document["curves"]["residuals"]["predictions"][0]
    assert residuals["targets"][-1] == document["curves"]["residuals"]["targets"][-1]
    assert "100 of 300 rows drawn" in paths["html"].read_text(encoding="utf-8")
    _check_png(paths["residuals"])
    _check_png(paths["training_curves"])
