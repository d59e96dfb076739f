"""The persistent compilation cache: the second start of a recipe loads its compiled
steps instead of compiling them."""

import json

import jaxfw

SHORT = ["trainer.steps=10", "trainer.eval_every=10", "trainer.progress=off"]


def test_second_start_hits_the_cache(tmp_path):
    overrides = [*SHORT, f"trainer.compile_cache={tmp_path / 'xla'}"]
    first = jaxfw.train(jaxfw.compose("breast_cancer", overrides), run_dir=tmp_path / "a")
    second = jaxfw.train(jaxfw.compose("breast_cancer", overrides), run_dir=tmp_path / "b")
    one = json.loads((first.run_dir / "run.json").read_text())["compile_cache"]
    two = json.loads((second.run_dir / "run.json").read_text())["compile_cache"]
    assert one["dir"] == str(tmp_path / "xla") and one["hits"] == 0 and one["misses"] > 0
    assert two["hits"] > 0 and two["misses"] == 0
    assert any((tmp_path / "xla").iterdir())
    # Results do not depend on where the executable came from.
    assert first.metrics == second.metrics


def test_cache_off_records_nothing(tmp_path):
    result = jaxfw.train(
        jaxfw.compose("breast_cancer", [*SHORT, "trainer.compile_cache=off"]),
        run_dir=tmp_path / "c",
    )
    record = json.loads((result.run_dir / "run.json").read_text())["compile_cache"]
    assert record == {"dir": None, "hits": 0, "misses": 0}
