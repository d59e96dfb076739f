"""jaxfw-serve under load: dynamic batching against batch-of-one serving of the same model
in the same run, and a hot reload under load.

    .venv/bin/python benchmarks/serve_load.py                         # 64 clients, 20 s per phase
    .venv/bin/python benchmarks/serve_load.py --clients 16 --seconds 5 --max-requests 20000

digits_mlp is trained briefly and exported (CPU). Each phase starts `jaxfw-serve` on a
free loopback port, waits until it is ready (warm), then runs --clients concurrent
clients, each sending one-row requests back to back on its own keep-alive connection,
for --seconds or until --max-requests in all (both bounded). The clients are raw asyncio
HTTP/1.1 (a few microseconds per request, so the load generator is not what is measured)
in this process; the server is its own process.

Phases:
- `batched`: the defaults (--max-batch-rows 256, --max-delay-ms 5);
- `batch_of_one`: --max-batch-rows 1 --max-delay-ms 0, every request its own call;
- `reload`: batched, serving digits@production from a registry; the alias moves to
  version 2 halfway through and the server switches (--poll-s 0.5).

Per phase: rows/s, latency p50/p90/p99 (ms), errors (non-200 answers, must be 0), mean
rows per compiled call (from the server's /metrics), CPU time per request in the server
process and in the clients (where the machine's cores went), and for `reload` the
versions that answered.
`ratio_rows_per_s` = batched / batch_of_one (target >= 4 at 64 clients). One JSON object
on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

SHORT = ["trainer.steps=100", "trainer.eval_every=100", "trainer.progress=off"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return 0, ""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _server(args: list[str], log: Path):
    port = _free_port()
    command = [str(Path(sys.executable).with_name("jaxfw-serve")), *args, "--port", str(port)]
    proc = subprocess.Popen(
        command,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while _get(url + "/v2/health/ready")[0] != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not become ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield port, url, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


async def _client(
    port: int, body: bytes, path: str, stop: float, budget: list[int], out: dict
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        while time.monotonic() < stop and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            out["latency"].append(time.perf_counter() - started)
            status = int(status_line.split()[1])
            if status != 200:
                out["errors"] += 1
            else:
                version = json.loads(payload)["model_version"]
                out["versions"][version] = out["versions"].get(version, 0) + 1
    finally:
        writer.close()


async def _load(
    port: int, model: str, clients: int, seconds: float, max_requests: int, during=None
) -> dict[str, Any]:
    row = [float(v % 17) for v in range(64)]
    body = json.dumps(
        {"inputs": [{"name": "inputs", "datatype": "FP32", "shape": [1, 64], "data": row}]}
    ).encode()
    out: dict[str, Any] = {"latency": [], "errors": 0, "versions": {}}
    budget = [max_requests]
    started = time.monotonic()
    stop = started + seconds
    tasks = [
        asyncio.create_task(_client(port, body, f"/v2/models/{model}/infer", stop, budget, out))
        for _ in range(clients)
    ]
    if during is not None:
        await asyncio.sleep(seconds / 2)
        await asyncio.to_thread(during)
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    latency = sorted(out["latency"])
    pick = lambda q: round(1000 * latency[min(len(latency) - 1, int(q * len(latency)))], 2)  # noqa: E731
    return {
        "requests": len(latency),
        "seconds": round(elapsed, 2),
        "rows_per_s": round(len(latency) / elapsed, 1),
        "latency_ms": {
            "p50": pick(0.5),
            "p90": pick(0.9),
            "p99": pick(0.99),
            "mean": round(1000 * statistics.fmean(latency), 2),
        },
        "errors": out["errors"],
        "versions_answering": out["versions"],
    }


def _batch_rows(url: str, model: str) -> float | None:
    _, text = _get(url + "/metrics")
    values = {}
    for line in text.splitlines():
        for key in ("sum", "count"):
            if line.startswith(f'jaxfw_serve_batch_rows_{key}{{model="{model}"}}'):
                values[key] = float(line.split()[-1])
    return round(values["sum"] / values["count"], 2) if values.get("count") else None


def _phase(
    name: str, args: list[str], model: str, options: argparse.Namespace, root: Path, during=None
) -> dict[str, Any]:
    _log(f"{name}: {options.clients} clients for {options.seconds} s")
    with _server(args, root / f"{name}.log") as (port, url, pid):
        server_cpu, client_cpu = _cpu_seconds(pid), time.process_time()
        result = asyncio.run(
            _load(port, model, options.clients, options.seconds, options.max_requests, during)
        )
        server_cpu, client_cpu = _cpu_seconds(pid) - server_cpu, time.process_time() - client_cpu
        result["mean_batch_rows"] = _batch_rows(url, model)
        # Where the two cores went: CPU time per request in the server and in the clients.
        result["cpu_us_per_request"] = {
            "server": round(1e6 * server_cpu / max(result["requests"], 1), 1),
            "clients": round(1e6 * client_cpu / max(result["requests"], 1), 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    args = parser.parse_args()
    load_start = os.getloadavg()[0]

    import jaxfw
    from jaxfw.export import export_run
    from jaxfw.registry import Registry

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import machine_info

    out: dict[str, Any] = {"clients": args.clients, "seconds_per_phase": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _log("digits_mlp: train briefly and export twice (two registry versions)")
        run = jaxfw.train(jaxfw.compose("digits_mlp", SHORT), run_dir=root / "run").run_dir
        first = export_run(run, out=root / "v1", platforms=["cpu"])
        second = export_run(run, checkpoint="latest", out=root / "v2", platforms=["cpu"])
        phases = {
            "batched": [f"digits={first}"],
            "batch_of_one": [f"digits={first}", "--max-batch-rows", "1", "--max-delay-ms", "0"],
        }
        for name, server_args in phases.items():
            out[name] = _phase(name, server_args, "digits", args, root)
        out["ratio_rows_per_s"] = round(
            out["batched"]["rows_per_s"] / out["batch_of_one"]["rows_per_s"], 2
        )
        registry = Registry(root / "registry")
        registry.register(first, "digits")
        registry.register(second, "digits")
        registry.set_alias("digits", "production", 1)
        server_args = ["digits@production", "--registry", str(registry.path), "--poll-s", "0.5"]
        out["reload"] = _phase(
            "reload",
            server_args,
            "digits",
            args,
            root,
            during=lambda: registry.set_alias("digits", "production", 2),
        )
    out["machine"] = machine_info(load_start)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
