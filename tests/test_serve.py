"""jaxfw-serve as a real process on a loopback port, spoken to over real HTTP (httpx and
tritonclient, a standard Open Inference Protocol client): protocol, batching, errors,
readiness, hot reload under load, metrics, authentication."""

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import cli_command, cli_env, free_port

from jaxfw.artifact import load
from jaxfw.registry import Registry

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 120


class Served:
    """A jaxfw-serve process and the base URL it answers on."""

    def __init__(self, args: list[str], tmp_path: Path, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            cli_command([*args, "--port", str(self.port)], script="jaxfw-serve"),
            env={**cli_env(tmp_path), **(env or {})},
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def wait(self, path: str = "/v2/health/ready") -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.TransportError):
                if self.client.get(path).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"not ready in {READY_TIMEOUT_S} s:\n{self.log.read_text()}")

    def stop(self) -> int:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def text(self) -> str:
        return self.log.read_text()


@contextlib.contextmanager
def serving(args: list[str], tmp_path: Path, env: dict | None = None, wait: bool = True):
    server = Served(args, tmp_path, env)
    try:
        if wait:
            server.wait()
        yield server
    finally:
        code = server.stop()
        assert code == 0, server.text()


def _infer_json(name: str, array: np.ndarray, datatype: str = "FP32", nested: bool = False) -> dict:
    data = array.tolist() if nested else array.ravel().tolist()
    return {
        "inputs": [{"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}]
    }


def _outputs(document: dict) -> dict:
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in document["outputs"]}


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    """digits_mlp, the shop table and lm_tiny behind one server (batches of up to 64 rows)."""
    tmp = tmp_path_factory.mktemp("serve")
    models = [
        f"digits={exported['digits_mlp'][1]}",
        f"shop={exported['shop'][1]}",
        f"lm={exported['lm_tiny'][1]}",
    ]
    args = [*models, "--max-batch-rows", "64", "--max-delay-ms", "20", "--max-queue-rows", "512"]
    with serving(args, tmp) as served:
        yield served


def test_metadata_health_and_loopback_default(server, exported):
    client = server.client
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert "binary_tensor_data" in client.get("/v2").json()["extensions"]
    meta = client.get("/v2/models/digits").json()
    assert meta["inputs"] == [{"name": "inputs", "datatype": "FP32", "shape": [-1, 64]}]
    assert [o["name"] for o in meta["outputs"]] == [
        "logits",
        "probabilities",
        "predicted_class",
        "predicted_label",
    ]
    version = meta["versions"][0]
    assert client.get(f"/v2/models/digits/versions/{version}").status_code == 200
    assert client.get(f"/v2/models/digits/versions/{version}/ready").json()["ready"] is True
    shop = client.get("/v2/models/shop").json()
    assert {i["name"]: i["datatype"] for i in shop["inputs"]} == {
        "size": "FP64",
        "color": "BYTES",
        "store": "BYTES",
        "weight": "FP64",
    }
    assert f"Uvicorn running on http://127.0.0.1:{server.port}" in server.text()


def test_json_tensors_flat_and_nested_equal_the_artifact(server, exported):
    artifact = load(exported["digits_mlp"][1])
    x = np.random.default_rng(0).integers(0, 17, (5, 64)).astype(np.float32)
    expected = artifact.predict(x)
    for nested in (False, True):
        answer = server.client.post(
            "/v2/models/digits/infer", json=_infer_json("inputs", x, nested=nested)
        )
        assert answer.status_code == 200, answer.text
        got = _outputs(answer.json())
        np.testing.assert_allclose(got["logits"], expected["logits"], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got["predicted_class"], expected["predicted_class"])
        assert list(got["predicted_label"]) == [str(c) for c in expected["predicted_class"]]


def test_a_standard_client_with_binary_tensors(server, exported):
    import tritonclient.http as triton

    artifact = load(exported["digits_mlp"][1])
    x = np.random.default_rng(1).integers(0, 17, (7, 64)).astype(np.float32)
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_ready() and client.is_model_ready("digits")
    tensor = triton.InferInput("inputs", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)  # binary by default
    result = client.infer("digits", [tensor])
    np.testing.assert_allclose(result.as_numpy("logits"), artifact.predict(x)["logits"], atol=1e-6)
    assert result.as_numpy("predicted_label").dtype == object
    with pytest.raises(triton.InferenceServerException, match="400"):
        client.infer("digits", [triton.InferInput("pixels", [1, 64], "FP32")])


def test_table_columns_with_bytes_and_missing_values(server, exported):
    artifact = load(exported["shop"][1])
    rows = [
        {"size": 0.4, "color": "red", "store": "7", "weight": None},
        {"size": -1.0, "color": None, "store": "11", "weight": 0.3},
        {"size": 2.5, "color": "purple", "store": "3", "weight": 1.1},
    ]
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    body = {
        "inputs": [
            {"name": "size", "datatype": "FP64", "shape": [3], "data": columns["size"]},
            {
                "name": "color",
                "datatype": "BYTES",
                "shape": [3],
                "data": [c or "" for c in columns["color"]],
            },
            {"name": "store", "datatype": "BYTES", "shape": [3], "data": columns["store"]},
            {"name": "weight", "datatype": "FP64", "shape": [3], "data": columns["weight"]},
        ],
        "outputs": [{"name": "predicted_label"}, {"name": "probabilities"}],
    }
    answer = server.client.post("/v2/models/shop/infer", json=body)
    assert answer.status_code == 200, answer.text
    got = _outputs(answer.json())
    assert set(got) == {"predicted_label", "probabilities"}
    expected = artifact.predict_rows(rows)
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"], atol=1e-6)
    assert list(got["predicted_label"]) == list(expected["predicted_label"])


def test_language_model_any_length_up_to_the_context(server, exported):
    artifact = load(exported["lm_tiny"][1])
    tokens = np.frombuffer(b"def main():\n    return", np.uint8).astype(np.int32)[None, :]
    answer = server.client.post("/v2/models/lm/infer", json=_infer_json("tokens", tokens, "INT32"))
    assert answer.status_code == 200, answer.text
    logits = _outputs(answer.json())["logits"]
    assert logits.shape == (1, tokens.shape[1], 256)
    np.testing.assert_allclose(logits, artifact.predict(tokens)["logits"], rtol=1e-5, atol=1e-5)


def test_mistakes_are_one_sentence_and_the_server_stays_up(server):
    client = server.client
    x = np.zeros((2, 64), np.float32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "inputs",
                    "datatype": "FP32",
                    "shape": [2, 64],
                    "parameters": {"binary_data_size": 512},
                }
            ]
        }
    ).encode()
    cases = [
        ("/v2/models/digits/infer", {"content": b"{not json"}, 400, "not valid JSON"),
        (
            "/v2/models/digits/infer",
            {"json": _infer_json("pixels", x)},
            400,
            "takes one input 'inputs'",
        ),
        (
            "/v2/models/digits/infer",
            {"json": _infer_json("inputs", x[:, :10])},
            400,
            "shape (2, 10)",
        ),
        (
            "/v2/models/digits/infer",
            {
                "json": {
                    "inputs": [
                        {"name": "inputs", "datatype": "FP8", "shape": [1, 64], "data": [0] * 64}
                    ]
                }
            },
            400,
            "datatype 'FP8'",
        ),
        ("/v2/models/digits/infer", {"json": {"inputs": []}}, 400, "no 'inputs'"),
        (
            "/v2/models/digits/infer",
            {"json": _infer_json("inputs", x, "BYTES")},
            400,
            "must be numeric",
        ),
        (
            "/v2/models/shop/infer",
            {
                "json": {
                    "inputs": [{"name": "size", "datatype": "FP64", "shape": [1], "data": [1.0]}]
                }
            },
            400,
            "no column 'color'",
        ),
        (
            "/v2/models/digits/infer",
            {
                "content": header + b"\0" * 100,
                "headers": {"Inference-Header-Content-Length": str(len(header))},
            },
            400,
            "binary_data_size 512",
        ),
        (
            "/v2/models/digits/infer",
            {"json": {**_infer_json("inputs", x), "outputs": [{"name": "nope"}]}},
            400,
            "Output 'nope'",
        ),
        ("/v2/models/nope/infer", {"json": _infer_json("inputs", x)}, 404, "'nope' is not served"),
        (
            "/v2/models/digits/versions/999/infer",
            {"json": _infer_json("inputs", x)},
            404,
            "no version '999'",
        ),
        (
            "/v2/models/digits/infer",
            {"json": _infer_json("inputs", np.zeros((600, 64), np.float32))},
            503,
            "overloaded",
        ),
    ]
    for path, kwargs, status, message in cases:
        answer = client.post(path, **kwargs)
        assert answer.status_code == status, (path, answer.text)
        error = answer.json()["error"]
        assert message in error and "\n" not in error and "Traceback" not in error, error
        if status == 503:
            assert answer.headers["retry-after"] == "1"
    assert client.get("/v2/health/live").status_code == 200
    assert "Traceback" not in server.text()


def test_concurrent_clients_get_their_own_answers_in_batches(server, exported):
    artifact = load(exported["digits_mlp"][1])
    rng = np.random.default_rng(2)
    inputs = [
        rng.integers(0, 17, (int(rng.integers(1, 9)), 64)).astype(np.float32) for _ in range(240)
    ]
    big = rng.integers(0, 17, (150, 64)).astype(np.float32)  # more rows than a batch: split
    inputs.append(big)

    def ask(x: np.ndarray) -> np.ndarray:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answer = client.post("/v2/models/digits/infer", json=_infer_json("inputs", x))
        assert answer.status_code == 200, answer.text
        return _outputs(answer.json())["logits"]

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, inputs))
    for x, got in zip(inputs, answers, strict=True):
        np.testing.assert_allclose(got, artifact.predict(x)["logits"], rtol=1e-5, atol=1e-5)
    metrics = server.client.get("/metrics").text
    count = _sample(metrics, 'jaxfw_serve_batch_rows_count{model="digits"}')
    rows = _sample(metrics, 'jaxfw_serve_batch_rows_sum{model="digits"}')
    assert rows >= sum(len(x) for x in inputs)
    assert rows / count > 1.5, (rows, count)  # requests were coalesced


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{text[:3000]}")


def test_metrics_page(server):
    server.client.post(
        "/v2/models/digits/infer", json=_infer_json("inputs", np.ones((2, 64), np.float32))
    )
    page = server.client.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain; version=")
    text = page.text
    version = server.client.get("/v2/models/digits").json()["versions"][0]
    assert (
        _sample(
            text, f'jaxfw_serve_requests_total{{model="digits",status="ok",version="{version}"}}'
        )
        >= 1
    )
    assert (
        _sample(text, f'jaxfw_serve_model_version_info{{model="digits",version="{version}"}}') == 1
    )
    for family in ("queue_seconds", "compute_seconds", "request_seconds"):
        assert f'jaxfw_serve_{family}_bucket{{le="0.005",model="digits"}}' in text
    assert 'jaxfw_serve_queue_rows{model="digits"}' in text
    assert 'jaxfw_serve_in_flight_requests{model="digits"}' in text


def test_token_limits_timeout_and_log_level(exported, tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    digits = str(exported["digits_mlp"][1])
    args = [
        *(digits, "--auth-token-file", str(token), "--open-health"),
        *("--max-body-mb", "0.01", "--request-timeout-s", "0.2", "--log-level", "warning"),
    ]
    env = {"JAXFW_SERVE_TEST_COMPUTE_DELAY_S": "1"}  # every compiled call takes a second
    auth = {"Authorization": "Bearer s3cret"}
    with serving(args, tmp_path, env=env) as served:
        client = served.client
        assert client.get("/v2/health/ready").status_code == 200  # open for probes
        one = _infer_json("inputs", np.zeros((1, 64), np.float32))
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            answer = client.post("/v2/models/digits_mlp/infer", json=one, headers=headers)
            assert answer.status_code == 401 and "Bearer" in answer.json()["error"]
            assert client.get("/v2/models/digits_mlp", headers=headers).status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/v2/models/digits_mlp", headers=auth).status_code == 200
        x = np.zeros((100, 64), np.float32)
        answer = client.post(
            "/v2/models/digits_mlp/infer", json=_infer_json("inputs", x), headers=auth
        )
        assert answer.status_code == 413 and "limit" in answer.json()["error"]
        answer = client.post("/v2/models/digits_mlp/infer", json=one, headers=auth)
        assert answer.status_code == 503 and "No answer within 0.2 s" in answer.json()["error"]
        assert answer.headers["retry-after"] == "1"
        assert client.get("/v2/health/live").status_code == 200
    assert "ready: digits_mlp" not in served.text()  # info lines are below --log-level warning


def test_refuses_tampered_and_unknown_models(exported, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported["digits_mlp"][1], copy)
    with (copy / "model.jaxexport").open("r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 1]))
    registry = tmp_path / "registry"
    for args, message in (
        ([str(copy)], "model.jaxexport changed after export"),
        (["ghost@production", "--registry", str(registry)], "ghost"),
        ([str(exported["digits_mlp"][1]), "--port", "0"], "must be > 0"),
    ):
        proc = subprocess.run(
            cli_command(args, script="jaxfw-serve"),
            env=cli_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], proc.stderr


def _export_copy(run_dir: Path, out: Path, checkpoint: str, platforms: list[str]) -> Path:
    from jaxfw.export import export_run

    return export_run(run_dir, checkpoint=checkpoint, out=out, platforms=platforms)


def test_hot_reload_under_load_fails_no_request(exported, tmp_path):
    run_dir, first = exported["digits_mlp"]
    registry = Registry(tmp_path / "registry")
    v1 = registry.register(first, "digits").version
    second = _export_copy(run_dir, tmp_path / "second", "latest", ["cpu"])
    v2 = registry.register(second, "digits").version
    broken = _export_copy(run_dir, tmp_path / "tpu_only", "latest", ["tpu"])
    v3 = registry.register(broken, "digits").version
    registry.set_alias("digits", "production", v1)
    args = ["digits@production", "--registry", str(registry.path), "--poll-s", "0.2"]
    x = np.random.default_rng(3).integers(0, 17, (3, 64)).astype(np.float32)
    with serving(args, tmp_path) as served:
        statuses, versions, stop = [], [], threading.Event()

        def load_loop() -> None:
            with httpx.Client(base_url=served.url, timeout=60) as client:
                while not stop.is_set():
                    answer = client.post("/v2/models/digits/infer", json=_infer_json("inputs", x))
                    statuses.append(answer.status_code)
                    if answer.status_code == 200:
                        versions.append(answer.json()["model_version"])

        clients = [threading.Thread(target=load_loop) for _ in range(4)]
        for thread in clients:
            thread.start()
        try:
            _until(lambda: len(statuses) > 20)
            registry.set_alias("digits", "production", v2)
            _until(lambda: served.client.get("/v2/models/digits").json()["versions"] == [str(v2)])
            _until(lambda: versions[-1:] == [str(v2)])
            count = len(statuses)
            _until(lambda: len(statuses) > count + 20)
            # A version that cannot load here (exported for TPU only) is refused.
            registry.set_alias("digits", "production", v3)
            _until(lambda: 'outcome="failed"' in served.client.get("/metrics").text)
            count = len(statuses)
            _until(lambda: len(statuses) > count + 20)
        finally:
            stop.set()
            for thread in clients:
                thread.join()
        assert set(statuses) == {200}, sorted(set(statuses))
        assert versions[0] == str(v1) and versions[-1] == str(v2)
        assert served.client.get("/v2/models/digits").json()["versions"] == [str(v2)]
        metrics = served.client.get("/metrics").text
        assert _sample(metrics, 'jaxfw_serve_reloads_total{model="digits",outcome="switched"}') == 1
        assert (
            f'jaxfw_serve_reload_failed_version{{model="digits",reason="ArtifactError",'
            f'version="{v3}"}} 1.0' in metrics
        )
        assert f"version {v3} refused, still serving {v2}" in served.text()
        assert "not for this machine's cpu" in served.text()


def test_sighup_reloads_at_once(exported, tmp_path):
    run_dir, first = exported["digits_mlp"]
    registry = Registry(tmp_path / "registry")
    v1 = registry.register(first, "digits").version
    v2 = registry.register(
        _export_copy(run_dir, tmp_path / "b", "latest", ["cpu"]), "digits"
    ).version
    registry.set_alias("digits", "staging", v1)
    args = ["digits@staging", "--registry", str(registry.path), "--poll-s", "0"]
    with serving(args, tmp_path) as served:
        registry.set_alias("digits", "staging", v2)
        time.sleep(0.5)
        assert served.client.get("/v2/models/digits").json()["versions"] == [str(v1)]  # no polling
        os.kill(served.proc.pid, signal.SIGHUP)
        _until(lambda: served.client.get("/v2/models/digits").json()["versions"] == [str(v2)])


def _until(condition, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_bytes_tensors_in_binary(server, exported):
    """BYTES columns in the binary extension: 4-byte little-endian lengths."""
    artifact = load(exported["shop"][1])
    colors = ["red", "blue"]
    blob = b"".join(struct.pack("<I", len(c)) + c.encode() for c in colors)
    numbers = np.array([0.1, -0.2], np.float64).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "size",
                    "datatype": "FP64",
                    "shape": [2],
                    "parameters": {"binary_data_size": 16},
                },
                {
                    "name": "color",
                    "datatype": "BYTES",
                    "shape": [2],
                    "parameters": {"binary_data_size": len(blob)},
                },
                {"name": "store", "datatype": "BYTES", "shape": [2], "data": ["3", "7"]},
                {"name": "weight", "datatype": "FP64", "shape": [2], "data": [None, 0.5]},
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    answer = server.client.post(
        "/v2/models/shop/infer",
        content=header + numbers + blob,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert answer.status_code == 200, answer.text
    length = int(answer.headers["inference-header-content-length"])
    document = json.loads(answer.content[:length])
    at, outputs = length, {}
    for output in document["outputs"]:
        size = output["parameters"]["binary_data_size"]
        outputs[output["name"]] = answer.content[at : at + size]
        at += size
    logits = np.frombuffer(outputs["logits"], np.float32).reshape(2, 2)
    rows = [
        {"size": 0.1, "color": "red", "store": "3", "weight": None},
        {"size": -0.2, "color": "blue", "store": "7", "weight": 0.5},
    ]
    np.testing.assert_allclose(logits, artifact.predict_rows(rows)["logits"], atol=1e-6)


def test_ready_after_warm_up_then_drift_endpoint_metrics_and_log(exported, tmp_path):
    from jaxfw.build import load_run_config
    from jaxfw.data import load_dataset
    from jaxfw.export.reference import raw_train_inputs

    run_dir, artifact = exported["breast_cancer"]
    cfg = load_run_config(run_dir)
    train = raw_train_inputs(load_dataset(cfg.data, cfg.seed))
    rows = len(train)
    args = [f"cancer={artifact}", "--drift-window-rows", str(rows), "--drift-window-s", "3600"]
    env = {"JAXFW_SERVE_TEST_WARM_DELAY_S": "3"}  # a slow warm-up: ready must wait for it
    with serving(args, tmp_path, env=env, wait=False) as served:
        served.wait("/v2/health/live")
        assert served.client.get("/v2/health/ready").status_code == 503
        assert served.client.get("/v2/models/cancer/ready").json()["ready"] is False
        answer = served.client.post(
            "/v2/models/cancer/infer", json=_infer_json("inputs", train[:1])
        )
        assert answer.status_code == 503 and "warming up" in answer.json()["error"]
        served.wait()
        assert served.client.get("/v2/models/cancer/ready").json()["ready"] is True

        def send(x: np.ndarray) -> None:
            for start in range(0, len(x), 50):
                answer = served.client.post(
                    "/v2/models/cancer/infer", json=_infer_json("inputs", x[start : start + 50])
                )
                assert answer.status_code == 200, answer.text

        send(train)  # the training rows themselves: nothing drifts
        report = served.client.get("/v2/models/cancer/drift").json()
        assert report["window"]["rows"] == rows and report["dataset_drift"] is False
        assert report["window"]["seconds"] == 3600
        assert report["drifted_features"] == []
        shifted = train.copy()
        column = 0  # "mean radius"
        shifted[:, column] += 2 * train[:, column].std()
        send(shifted)  # replaces the window
        report = served.client.get("/v2/models/cancer/drift").json()
        assert report["drifted_features"] == ["mean radius"], report["drifted_features"]
        assert report["features"]["mean radius"]["psi"] >= 0.25
        assert report["thresholds"] and report["dataset_drift"] is False
        metrics = served.client.get("/metrics").text
        assert (
            _sample(metrics, 'jaxfw_serve_drift_status{feature="mean radius",model="cancer"}') == 2
        )
        assert (
            _sample(metrics, 'jaxfw_serve_drift_status{feature="mean texture",model="cancer"}') == 0
        )
        assert (
            _sample(metrics, 'jaxfw_serve_drift_psi{feature="mean radius",model="cancer"}') >= 0.25
        )
        assert _sample(metrics, 'jaxfw_serve_drift_window_rows{model="cancer"}') == rows
        assert "feature 'mean radius' went from ok to drift" in served.text()
        assert served.client.get("/v2/models/nope/drift").status_code == 404
