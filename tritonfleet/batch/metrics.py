"""``tritonfleet_batch_*`` on the metrics port: lines answered by outcome, tokens, what is in flight.

Lines and batches in flight are read from the store at each scrape (so they are the whole fleet's, every
worker's); results written and tokens are counted by the process that wrote them (lines per second are
``rate(tritonfleet_batch_results_total[1m])``, as the monitoring rules record them). The names are in
:mod:`tritonfleet.monitoring.catalog`, which README's metric table comes from.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily

from tritonfleet.batch.store import ACTIVE, Result, Store

OUTCOMES = ("completed", "failed")
LINE_STATES = ("pending", "leased", "done")


class BatchMetrics:
    """The batch metrics, registered in ``registry`` (the front door's, so the metrics port serves them)."""

    def __init__(self, store: Store, registry: CollectorRegistry | None = None) -> None:
        self.store = store
        self.registry = registry or CollectorRegistry()
        self.results = Counter(
            "tritonfleet_batch_results",
            "Batch lines answered (written once), by outcome",
            ["status"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:  # from 0, so that the first answer is an increase Prometheus sees
            self.results.labels(outcome)
        self.tokens = Counter(
            "tritonfleet_batch_tokens",
            "Tokens of batch lines, by key (apart from /v1's tokens per minute)",
            ["key"],
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(store))

    def written(self, results: list[Result], owner: str = "-") -> None:
        ok = sum(r.ok for r in results)
        self.results.labels("completed").inc(ok)
        self.results.labels("failed").inc(len(results) - ok)
        tokens = sum(r.tokens for r in results)
        if tokens:
            self.tokens.labels(owner).inc(tokens)


class _StoreCollector:
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        try:
            states = self.store.totals()
            batches = {s: len(self.store.with_status(s)) for s in ACTIVE}
        except Exception:  # the store is unreachable: no batch gauges this scrape
            return
        lines = GaugeMetricFamily(
            "tritonfleet_batch_lines", "Lines of the batches in flight, by state", labels=["state"]
        )
        for state in LINE_STATES:
            lines.add_metric([state], states.get(state, 0))
        yield lines
        yield GaugeMetricFamily(
            "tritonfleet_batch_queue_depth", "Lines waiting to run", value=states.get("pending", 0)
        )
        in_flight = GaugeMetricFamily(
            "tritonfleet_batch_in_flight", "Batches in flight, by status", labels=["status"]
        )
        for status, n in batches.items():
            in_flight.add_metric([status], n)
        yield in_flight
