"""The front door's Prometheus metrics, served on the public metrics port beside Triton's own.

Names follow Prometheus' conventions (units in names, ``_total`` counters, histograms that aggregate over
replicas); README's Monitoring section lists them with Triton's and the LLM's, and
``tritonfleet/monitoring/`` holds the rules and the dashboard that read them.
"""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# No ``*_created`` series beside every counter and histogram: Prometheus does not read them.
prometheus_client.disable_created_metrics()

# A stream lasts as long as its generation: the buckets reach two minutes.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# gRPC codes by whose fault they are (the front door answers its own 405 with UNIMPLEMENTED, and a client's
# cancel is CANCELLED: both the client's); any other code is the server's.
GRPC_CLIENT_CODES = frozenset(
    {"CANCELLED", "INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
     "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
     "UNAUTHENTICATED"}
)  # fmt: skip


def status_class(status: int | str) -> str:
    """``2xx`` / ``4xx`` / ``5xx`` of an HTTP status or a gRPC code name (``OK``, ``UNAVAILABLE`` ...)."""
    if isinstance(status, int) or status.isdigit():
        return f"{int(status) // 100}xx"
    if status == "OK":
        return "2xx"
    return "4xx" if status in GRPC_CLIENT_CODES else "5xx"


class Metrics:
    """Requests by route, model, key and status; their duration; rejections by reason; recoveries; tokens."""

    def __init__(self) -> None:
        self.before_scrape: list[Callable[[], object]] = []  # bring counts up to date (the gRPC transport's)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tritonfleet_frontdoor_requests",
            "Requests answered by the front door (status: HTTP status or gRPC code; its class 2xx/4xx/5xx)",
            ["protocol", "route", "model", "key", "status", "status_class"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "tritonfleet_frontdoor_rejections",
            "Requests the front door refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "tritonfleet_frontdoor_request_duration_seconds",
            "Time from a request's last byte to its answer's last (a stream's end), the front door and what "
            "is behind it",
            ["protocol", "route", "model"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.recoveries = Counter(
            "tritonfleet_frontdoor_recoveries",
            "Recoveries by the supervisor: server restarts and model reloads",
            ["kind", "model"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "tritonfleet_frontdoor_tokens",
            "Tokens (prompt + completion) used on /v1, by key",
            ["key"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "tritonfleet_frontdoor_ready", "1 while every public pipeline answers", registry=self.registry
        )

    def request(self, protocol: str, route: str, model: str, key: str, status: int | str) -> None:
        """Count one answered request."""
        self.requests.labels(protocol, route, model, key, str(status), status_class(status)).inc()

    def observe(self, protocol: str, route: str, model: str, seconds: float) -> None:
        """One request's duration."""
        self.duration.labels(protocol, route, model).observe(seconds)

    def expect(self, models: list[str]) -> None:
        """Start the recovery counters of ``models`` (and tritonserver's) at zero, so that the first recovery
        is an increase Prometheus sees, not a series appearing at 1."""
        self.recoveries.labels("server_restart", "tritonserver")
        for model in models:
            self.recoveries.labels("model_reload", model)

    def text(self) -> bytes:
        for update in self.before_scrape:
            update()
        return generate_latest(self.registry)
