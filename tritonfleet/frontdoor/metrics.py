"""The front door's Prometheus metrics, served on the public metrics port beside Triton's own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Requests by route, model, key and status; rejections by reason; latency; recoveries."""

    def __init__(self) -> None:
        self.before_scrape: list[Callable[[], object]] = []  # bring counts up to date (the gRPC transport's)
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tritonfleet_frontdoor_requests",
            "Requests answered by the front door",
            ["protocol", "route", "model", "key", "status"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "tritonfleet_frontdoor_rejections",
            "Requests the front door refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tritonfleet_frontdoor_latency_seconds",
            "Time from a request's last byte to its answer's first (the front door and what is behind it)",
            ["protocol", "route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
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

    def text(self) -> bytes:
        for update in self.before_scrape:
            update()
        return generate_latest(self.registry)
