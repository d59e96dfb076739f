"""The server's Prometheus metrics (prometheus-client), on a registry of its own so two
servers in one process (tests) do not collide. Scraped at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "jaxfw_serve_requests",
            "Inference requests by outcome",
            ["model", "version", "status"],
            registry=r,
        )
        self.queue_seconds = Histogram(
            "jaxfw_serve_queue_seconds",
            "Time a request waited for its batch",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_seconds = Histogram(
            "jaxfw_serve_compute_seconds",
            "Time of the compiled calls answering a request",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "jaxfw_serve_request_seconds",
            "Time from receiving a request to answering it",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_rows = Histogram(
            "jaxfw_serve_batch_rows",
            "Rows per compiled call (before padding)",
            ["model"],
            buckets=ROW_BUCKETS,
            registry=r,
        )
        self.queue_rows = Gauge(
            "jaxfw_serve_queue_rows", "Rows waiting to be batched", ["model"], registry=r
        )
        self.in_flight = Gauge(
            "jaxfw_serve_in_flight_requests", "Requests being answered", ["model"], registry=r
        )
        self.served_version = Gauge(
            "jaxfw_serve_model_version_info",
            "1 for the version each model serves",
            ["model", "version"],
            registry=r,
        )
        self.drift_psi = Gauge(
            "jaxfw_serve_drift_psi",
            "Population stability index of a feature over the window",
            ["model", "feature"],
            registry=r,
        )
        self.drift_status = Gauge(
            "jaxfw_serve_drift_status",
            "Drift status of a feature: -1 no data, 0 ok, 1 watch, 2 drift",
            ["model", "feature"],
            registry=r,
        )
        self.dataset_drift = Gauge(
            "jaxfw_serve_dataset_drift",
            "1 when at least half the features drift",
            ["model"],
            registry=r,
        )
        self.drift_window_rows = Gauge(
            "jaxfw_serve_drift_window_rows", "Rows in the drift window", ["model"], registry=r
        )
        self.reloads = Counter(
            "jaxfw_serve_reloads",
            "Version switches by outcome (switched, failed)",
            ["model", "outcome"],
            registry=r,
        )
        self.reload_failure = Gauge(
            "jaxfw_serve_reload_failed_version",
            "The version last refused, by reason",
            ["model", "version", "reason"],
            registry=r,
        )

    def for_model(self, model: str, version: str) -> ModelMeters:
        return ModelMeters(self, model, version)

    def set_version(self, model: str, version: str, previous: str | None = None) -> None:
        if previous is not None:
            self.served_version.remove(model, previous)
        self.served_version.labels(model, version).set(1)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ModelMeters:
    """One model version's metric children, resolved once (a `labels()` lookup per request
    and metric costs more than the observation itself)."""

    def __init__(self, metrics: ServerMetrics, model: str, version: str) -> None:
        self.queue_seconds = metrics.queue_seconds.labels(model)
        self.compute_seconds = metrics.compute_seconds.labels(model)
        self.request_seconds = metrics.request_seconds.labels(model)
        self.in_flight = metrics.in_flight.labels(model)
        self._requests = metrics.requests
        self._model, self._version = model, version
        self._by_status: dict[str, object] = {}

    def requests(self, status: str):
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self._requests.labels(
                self._model, self._version, status
            )
        return child
