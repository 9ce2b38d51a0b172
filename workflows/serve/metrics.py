"""``GET /metrics`` of ``vkit serve``: Prometheus text with the client library, one registry per server.

| metric | type | labels |
|---|---|---|
| ``vkit_serve_requests_total`` | counter | ``endpoint`` (the route template), ``method``, ``status`` |
| ``vkit_serve_request_seconds`` | histogram | ``endpoint``, ``method``, ``status`` |
| ``vkit_serve_batch_size`` | histogram | ``task`` |
| ``vkit_serve_queue_depth`` | gauge | ``task`` (requests waiting for a replica) |
| ``vkit_serve_model_info`` | gauge (1) | ``task``, ``sha256``, ``precision``, ``replicas`` |
| ``vkit_serve_predictions_stored_total`` | gauge | (rows the recorder wrote) |
| ``vkit_serve_score_jobs_running`` | gauge | |

Example::

    metrics = ServeMetrics()
    metrics.observe("/v1/{task}/predict", "POST", 200, 0.031)
    body, content_type = metrics.render()
"""
from __future__ import annotations

from typing import Any

__all__ = ["ServeMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServeMetrics:
    """The server's Prometheus metrics (a registry of its own: several servers in one process never mix)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = ("endpoint", "method", "status")
        self.requests = Counter("vkit_serve_requests", "HTTP requests answered", labels, registry=self.registry)
        self.latency = Histogram("vkit_serve_request_seconds", "Time to answer a request", labels,
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch = Histogram("vkit_serve_batch_size", "Items per model batch", ("task",), buckets=_BATCH_BUCKETS,
                               registry=self.registry)
        self.queue = Gauge("vkit_serve_queue_depth", "Requests waiting for a replica", ("task",),
                           registry=self.registry)
        self.model = Gauge("vkit_serve_model_info", "The model served for a task (value 1)",
                           ("task", "sha256", "precision", "replicas"), registry=self.registry)
        self.stored = Gauge("vkit_serve_predictions_stored", "Prediction rows written to the store",
                            registry=self.registry)
        self.jobs = Gauge("vkit_serve_score_jobs_running", "Scoring jobs running", registry=self.registry)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint, method, str(status)).observe(seconds)

    def set_model(self, task: str, sha256: str, precision: str, replicas: int) -> None:
        """The model now served for ``task`` (the previous one's series is removed)."""
        for sample in list(self.model.collect()[0].samples):
            if sample.labels.get("task") == task:
                self.model.remove(*(sample.labels[k] for k in ("task", "sha256", "precision", "replicas")))
        self.model.labels(task, sha256, precision, str(replicas)).set(1)

    def render(self, refresh: Any = None) -> tuple[bytes, str]:
        """The exposition text and its content type (``refresh()`` first updates the gauges read on demand)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if refresh is not None:
            refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
