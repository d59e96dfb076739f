"""jaxfw-export and jaxfw.artifact.load: trained runs of four kinds exported, then loaded in
a process where Flax, Optax, Orbax, Grain and Hydra cannot be imported, give the
training-side model's outputs; a changed, missing or unlisted file, or a JAX outside the
export's window, is one sentence and nothing loaded."""

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import cli_env, describe, run_cli, shop_table

from jaxfw.artifact import ArtifactError, load, manifest
from jaxfw.build import build_parts, load_run_config
from jaxfw.checkpoint import CHECKPOINT_DIR, Checkpointer, abstract_like
from jaxfw.cli.export import main as export_main
from jaxfw.data.options import DataOptions
from jaxfw.data.sources.arrays import checked_inputs, read_source
from jaxfw.data.splits import split_indices
from jaxfw.evaluation.run import open_run_checkpoint

pytestmark = pytest.mark.slow

# Run in a fresh interpreter: the artifact must load and predict with these unimportable.
BLOCKED = ("flax", "optax", "orbax", "grain", "hydra", "omegaconf")
LOADER = """
import importlib.abc, json, sys
import numpy as np

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked}:
            raise ImportError("blocked: " + name)

sys.meta_path.insert(0, Block())
import jaxfw.artifact

artifact = jaxfw.artifact.load(sys.argv[1])
request = sys.argv[2]
if request.endswith(".json"):
    out = artifact.predict_rows(json.loads(open(request).read()))
else:
    out = artifact.predict(np.load(request)["inputs"])
out.pop("predicted_label", None)
np.savez(sys.argv[3], **out)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {blocked})
print(json.dumps({{"blocked_modules_loaded": loaded}}))
""".format(blocked=set(BLOCKED))


def _training_side(run_dir: Path) -> tuple[dict, object]:
    """The training code's own outputs on the test split (jitted apply of the restored
    best checkpoint), and the parts."""
    cfg, checkpointer, _, step = open_run_checkpoint(run_dir, "best")
    parts = build_parts(cfg)
    state = checkpointer.restore_state(abstract_like(parts.init_state()), step)
    variables = {"params": state.params, **state.model_state}
    apply = jax.jit(lambda v, x: parts.model.apply(v, {"inputs": x}, train=False)[0])
    logits = np.asarray(apply(variables, parts.data.test.inputs))
    return {"logits": logits}, parts


def _predict_elsewhere(artifact: Path, request: Path, tmp_path: Path) -> dict:
    script = tmp_path / "load_artifact.py"
    script.write_text(LOADER)
    result = tmp_path / "out.npz"
    proc = subprocess.run(
        [sys.executable, str(script), str(artifact), str(request), str(result)],
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, describe(proc)
    assert json.loads(proc.stdout.splitlines()[-1]) == {"blocked_modules_loaded": []}
    return dict(np.load(result))


def _raw_test_inputs(run_dir: Path) -> np.ndarray:
    """The test split's inputs exactly as the bundled dataset stores them."""
    cfg = load_run_config(run_dir)
    options = DataOptions.from_config(cfg.data)
    raw = read_source(options)
    targets = np.asarray(raw.targets, np.int32)
    return checked_inputs(raw)[split_indices(targets, options, cfg.seed)["test"]]


@pytest.mark.parametrize("name", ["digits_mlp", "breast_cancer"])
def test_array_models_predict_raw_inputs_like_training(exported, name, tmp_path):
    run_dir, artifact = exported[name]
    expected, parts = _training_side(run_dir)
    request = tmp_path / "inputs.npz"
    np.savez(request, inputs=_raw_test_inputs(run_dir))
    got = _predict_elsewhere(artifact, request, tmp_path)
    np.testing.assert_allclose(got["logits"], expected["logits"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got["predicted_class"], expected["logits"].argmax(-1))
    np.testing.assert_allclose(got["probabilities"].sum(-1), 1.0, rtol=1e-5)
    # The artifact's accuracy on the raw test split is the one training reported.
    report = json.loads((run_dir / "report/metrics.json").read_text())
    accuracy = (got["predicted_class"] == parts.data.test.targets).mean()
    assert accuracy == pytest.approx(report["metrics"]["accuracy"], abs=1e-9)


def test_table_model_takes_raw_csv_rows_like_jaxfw_eval(exported, tmp_path):
    run_dir, artifact = exported["shop"]
    expected, parts = _training_side(run_dir)
    with open(Path(load_run_config(run_dir).data.path), newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    for row in rows:  # raw text as a CSV holds it, target and split removed
        del row["label"], row["split"]
    for column, value in (("weight", ""), ("weight", "nan"), ("color", "")):
        assert any(row[column] == value for row in rows), (column, value)
    request = tmp_path / "rows.json"
    request.write_text(json.dumps(rows))
    got = _predict_elsewhere(artifact, request, tmp_path)
    np.testing.assert_allclose(got["logits"], expected["logits"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got["predicted_class"], expected["logits"].argmax(-1))
    report = json.loads((run_dir / "report/metrics.json").read_text())
    accuracy = (got["predicted_class"] == parts.data.test.targets).mean()
    assert accuracy == pytest.approx(report["metrics"]["accuracy"], abs=1e-9)
    # Labels by name, in the table target's own values.
    model = load(artifact)
    assert model.signature["class_labels"] == ["no", "yes"]
    labels = model.predict_rows(rows[:5])["predicted_label"]
    assert list(labels) == [["no", "yes"][c] for c in got["predicted_class"][:5]]


def test_lm_artifact_gives_next_byte_logits(exported, tmp_path):
    run_dir, artifact = exported["lm_tiny"]
    expected, parts = _training_side(run_dir)
    request = tmp_path / "tokens.npz"
    np.savez(request, inputs=parts.data.test.inputs)
    got = _predict_elsewhere(artifact, request, tmp_path)
    assert got["logits"].shape == (*parts.data.test.inputs.shape, 256)
    np.testing.assert_allclose(got["logits"], expected["logits"], rtol=1e-6, atol=1e-5)
    # A shorter sequence is a prefix: causal logits of its positions are the same.
    model = load(artifact)
    short = model.predict(parts.data.test.inputs[:3, :10])["logits"]
    np.testing.assert_allclose(short, expected["logits"][:3, :10], rtol=1e-5, atol=1e-5)
    with pytest.raises(ArtifactError, match="length 33; this model takes 1 to 32"):
        model.predict(np.zeros((1, 33), np.int32))
    with pytest.raises(ArtifactError, match=r"0\.\.255"):
        model.predict(np.full((1, 4), 300))


def test_any_batch_size_gives_the_same_rows(exported):
    _, artifact = exported["digits_mlp"]
    model = load(artifact)
    x = np.random.default_rng(1).integers(0, 17, (1100, 64)).astype(np.float32)
    whole = model.predict(x)["logits"]  # two chunks: 1024 + 76 padded to 128
    for size in (1, 3, 77):
        np.testing.assert_allclose(model.predict(x[:size])["logits"], whole[:size], atol=1e-5)
    with pytest.raises(
        ArtifactError, match=r"shape \(2, 10\); this model takes inputs of shape \(batch, 64\)"
    ):
        model.predict(np.zeros((2, 10), np.float32))


def test_artifact_files_say_what_the_model_is(exported):
    run_dir, artifact = exported["breast_cancer"]
    signature = json.loads((artifact / "signature.json").read_text())
    assert signature["task"] == "classification"
    assert signature["inputs"][0]["shape"] == [-1, 30]
    assert signature["inputs"][0]["feature_names"][0] == "mean radius"
    assert [o["name"] for o in signature["outputs"]][:3] == [
        "logits",
        "probabilities",
        "predicted_class",
    ]
    card = json.loads((artifact / "card.json").read_text())
    run = json.loads((run_dir / "run.json").read_text())
    assert card["run_id"] == run["run_id"] and card["data_fingerprint"] == run["data_fingerprint"]
    assert card["git"] == run["git"] and card["jax_version"] == jax.__version__
    assert card["metrics"]["test/accuracy"] == run["final_metrics"]["test/accuracy"]
    assert card["parameter_count"] == run["parameters"]
    assert card["platforms"] == ["cpu", "cuda", "tpu"]
    assert load(artifact).exported.platforms == ("cpu", "cuda", "tpu")
    text = (artifact / "MODEL_CARD.md").read_text()
    assert run["run_id"] in text and "test/accuracy" in text
    # No pickle anywhere: the weights are safetensors, everything else JSON or text.
    assert all(b"\x80\x04\x95" not in p.read_bytes()[:3] for p in artifact.iterdir())
    # Rows keyed by feature name give what arrays give.
    model = load(artifact)
    x = _raw_test_inputs(run_dir)[:4]
    rows = [
        dict(zip(signature["inputs"][0]["feature_names"], map(float, r), strict=True)) for r in x
    ]
    np.testing.assert_array_equal(model.predict_rows(rows)["logits"], model.predict(x)["logits"])


def test_reference_summarises_the_raw_training_split(exported):
    _, artifact = exported["shop"]
    reference = json.loads((artifact / "reference.json").read_text())
    table = shop_table()
    train = np.asarray(table.column("split").to_pylist()) == "train"
    assert reference["rows"] == int(train.sum())
    weight = reference["features"]["weight"]
    raw = table.column("weight").to_numpy(zero_copy_only=False)[train]
    assert weight["missing_share"] == pytest.approx(np.isnan(raw).mean())
    assert sum(weight["shares"]) + weight["missing_share"] == pytest.approx(1.0)
    assert len(weight["edges"]) == 9  # 10 quantile bins of a continuous feature
    color = reference["features"]["color"]
    assert set(color["shares"]) == {"red", "green", "blue"}
    colors = table.column("color").to_pylist()
    reds = sum(1 for c, t in zip(colors, train, strict=True) if t and c == "red")
    assert color["shares"]["red"] == pytest.approx(reds / train.sum())
    assert color["missing_share"] > 0
    _, digits = exported["digits_mlp"]
    pixels = json.loads((digits / "reference.json").read_text())["features"]
    assert "pixel_0_0" in pixels and all(e == round(e) for e in pixels["pixel_3_3"]["edges"])
    _, lm = exported["lm_tiny"]
    byte = json.loads((lm / "reference.json").read_text())["features"]["byte"]
    assert sum(byte["shares"].values()) == pytest.approx(1.0) and byte["shares"][str(ord("e"))] > 0


def _copy(artifact: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "artifact"
    shutil.copytree(artifact, copy)
    return copy


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("flip", r"weights.safetensors changed after export"),
        ("remove", r"signature.json is missing"),
        ("extra", r"notes.txt is not listed in the artifact's manifest.json"),
        ("manifest", r"model.jaxexport changed after export"),
        ("no_manifest", r"no manifest.json"),
    ],
)
def test_damaged_artifacts_load_nothing(exported, tmp_path, damage, message):
    copy = _copy(exported["digits_mlp"][1], tmp_path)
    if damage == "flip":
        data = bytearray((copy / "weights.safetensors").read_bytes())
        data[len(data) // 2] ^= 1
        (copy / "weights.safetensors").write_bytes(bytes(data))
    elif damage == "remove":
        (copy / "signature.json").unlink()
    elif damage == "extra":
        (copy / "notes.txt").write_text("hi")
    elif damage == "manifest":
        listed = json.loads((copy / "manifest.json").read_text())
        listed["files"]["model.jaxexport"] = "0" * 64
        (copy / "manifest.json").write_text(json.dumps(listed))
    else:
        (copy / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match=message) as caught:
        load(copy)
    assert "\n" not in str(caught.value)


def test_jax_outside_the_export_window_is_named(exported, tmp_path):
    copy = _copy(exported["digits_mlp"][1], tmp_path)
    listed = json.loads((copy / "manifest.json").read_text())
    listed["jax_version"] = "99.0.0"
    (copy / "manifest.json").write_text(json.dumps(listed))
    with pytest.raises(ArtifactError, match=rf"JAX 99.0.0.*JAX {jax.__version__}"):
        load(copy)
    listed.update(jax_version="0.4.0", exported_at="2020-01-01T00:00:00+00:00")
    (copy / "manifest.json").write_text(json.dumps(listed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(copy)
    assert any("JAX 0.4.0" in str(w.message) and "6-month" in str(w.message) for w in caught)
    assert model.predict(np.zeros((1, 64), np.float32))["logits"].shape == (1, 10)


def test_export_platforms_option_and_cli_mistakes(exported, tmp_path, capsys):
    run_dir, _ = exported["digits_mlp"]
    out = tmp_path / "cpu_only"
    proc = run_cli(
        [str(run_dir), f"out={out}", "export.platforms=[cpu]"], tmp_path, script="jaxfw-export"
    )
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == str(out)
    assert load(out).exported.platforms == ("cpu",)
    manifest.verify_artifact(out)
    # Two mistakes through the installed command (one line, exit 2); the others through
    # the same `main` in this process (a fresh interpreter per case costs ~5 s of imports).
    before = sorted(p.name for p in out.iterdir())
    for args, message in {
        (str(tmp_path / "nowhere"),): "is not a jaxfw run directory",
        (str(run_dir), "platforms=cpu"): "Unknown argument 'platforms=cpu'",
    }.items():
        proc = run_cli(list(args), tmp_path, script="jaxfw-export")
        assert proc.returncode == 2, describe(proc)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], describe(proc)
    for args, message in {
        (str(run_dir), "checkpoint=7"): "checkpoint=7 is not best, latest or a saved step",
        (str(run_dir), "export.platforms=[cpu,gpu]"): "'gpu'; choose from cpu, cuda, rocm, tpu",
        (str(run_dir), f"out={out}"): "already exists",
    }.items():
        with pytest.raises(SystemExit) as stopped:
            export_main(list(args))
        assert stopped.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    assert sorted(p.name for p in out.iterdir()) == before
    # checkpoint=latest and checkpoint=<step>: the card says which was exported.
    steps = Checkpointer(run_dir / CHECKPOINT_DIR, read_only=True).steps()
    for which, kind, step in (("latest", "latest", steps[-1]), (str(steps[0]), "step", steps[0])):
        target = _export_checkpoint(run_dir, which, tmp_path / f"ck-{which}")
        card = json.loads((target / "card.json").read_text())
        assert card["checkpoint"] == {"kind": kind, "step": step}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def _export_checkpoint(run_dir: Path, checkpoint: str, out: Path) -> Path:
    from jaxfw.export import export_run

    return export_run(run_dir, checkpoint=checkpoint, out=out)


def test_a_registered_export_loads_by_alias_and_version(exported, tmp_path):
    from jaxfw.registry import Registry

    run_dir, artifact = exported["shop"]
    registry = Registry(tmp_path / "registry")
    first = registry.register(artifact, "shop", {"owner": "ana"})
    assert registry.register(artifact, "shop", {}).version == first.version  # same content
    registry.set_alias("shop", "production", first.version)
    rows = [{"size": 0.3, "color": "red", "store": 7, "weight": None}]
    direct = load(artifact).predict_rows(rows)
    for ref in ("shop@production", f"shop/{first.version}", "shop"):
        np.testing.assert_array_equal(
            registry.load(ref).predict_rows(rows)["logits"], direct["logits"]
        )
    shown = json.dumps(registry.show("shop@production"))
    assert (
        "production" in shown and json.loads((run_dir / "run.json").read_text())["run_id"] in shown
    )
    assert (
        registry.card("shop/1")["run_id"]
        == json.loads((run_dir / "run.json").read_text())["run_id"]
    )


def test_an_unwritable_destination_is_one_sentence_and_leaves_nothing(exported, tmp_path, capsys):
    from conftest import read_only

    run_dir, _ = exported["digits_mlp"]
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    with read_only(shelf) as made_read_only:
        if not made_read_only:
            pytest.skip("this machine refuses a read-only bind mount (needs root in a sandbox)")
        with pytest.raises(SystemExit) as stopped:
            export_main([str(run_dir), f"out={shelf / 'digits'}", "export.platforms=[cpu]"])
    assert stopped.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Could not write the artifact" in lines[0], lines
    assert "Read-only file system" in lines[0] and "nothing was exported" in lines[0]
    assert list(shelf.iterdir()) == []
