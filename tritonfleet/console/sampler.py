"""The fleet page's last 15 minutes: one sampler per fleet reads the metrics every 2 s and keeps what the
charts show, derived from each interval (rates, and quantiles of the histograms' new observations).

The history lives here, not in the browser: a page opened now shows the last 15 minutes at once, every tab
shares one reader, and a tab downloads a few numbers per point instead of the whole metrics text every 2 s.
It costs 450 points of 6 floats (and the last minute of readings, for each model's throughput and p50/p99).

It reads the metrics the Prometheus rules read (``tritonfleet/monitoring/catalog.py`` lists them): the front
door's requests, rejections and request-duration histogram (the routes that run a model, by model), the CPU
LLM's time to first token and generated tokens, and Triton's inference counts per model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from tritonfleet.frontdoor.policy import MODEL_ROUTES

log = logging.getLogger("tritonfleet.console")
INTERVAL_S = 2.0
WINDOW_S = 15 * 60
REQUESTS = "tritonfleet_frontdoor_requests_total"
DURATION = "tritonfleet_frontdoor_request_duration_seconds_bucket"
REJECTIONS = "tritonfleet_frontdoor_rejections_total"
TTFT = "tritonfleet_llm_time_to_first_token_seconds_bucket"
TOKENS = "tritonfleet_llm_generated_tokens_total"
INFERENCES = "nv_inference_count_total"  # Triton's nv_inference_count (the parser names counters *_total)
SERIES = ("requests_s", "p99_ms", "ttft_ms", "tokens_s", "rejections_s")
WORK = frozenset(MODEL_ROUTES)
NO_MODEL = ("", "-")

Buckets = dict[float, float]  # a histogram's cumulative counts by upper bound


@dataclass
class Scrape:
    """The totals of one reading of the metrics."""

    t: float
    requests: float = 0.0
    rejections: float = 0.0
    tokens: float = 0.0
    duration: Buckets = field(default_factory=dict)  # every request that ran a model
    by_model: dict[str, Buckets] = field(default_factory=dict)  # the same, by the front door's model label
    ttft: Buckets = field(default_factory=dict)
    inferences: dict[str, float] = field(default_factory=dict)  # per Triton model


def _add(buckets: Buckets, bound: str, value: float) -> None:
    le = float(bound)
    buckets[le] = buckets.get(le, 0.0) + value


def parse(text: str, t: float) -> Scrape:
    """The totals the console charts, from Prometheus text (Triton's metrics and the front door's)."""
    scrape = Scrape(t)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == REQUESTS and labels.get("route") in WORK:
                scrape.requests += value
            elif name == DURATION and labels.get("route") in WORK:
                _add(scrape.duration, labels["le"], value)
                if labels.get("model", "") not in NO_MODEL:
                    _add(scrape.by_model.setdefault(labels["model"], {}), labels["le"], value)
            elif name == REJECTIONS:
                scrape.rejections += value
            elif name == TOKENS:
                scrape.tokens += value
            elif name == TTFT:
                _add(scrape.ttft, labels["le"], value)
            elif name == INFERENCES:
                model = labels.get("model", "")
                scrape.inferences[model] = scrape.inferences.get(model, 0.0) + value
    return scrape


def quantile(q: float, before: Buckets, after: Buckets) -> float | None:
    """The ``q`` quantile of the observations a histogram got between two readings (Prometheus'
    histogram_quantile: linear within the bucket), or None when it got none."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower  # in the +Inf bucket: the highest finite bound, as Prometheus answers
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def point(before: Scrape, after: Scrape) -> dict[str, float | None]:
    """One chart point: the rates and quantiles of the interval between two readings."""
    dt = after.t - before.t
    if dt <= 0:
        dt = INTERVAL_S

    def rate(a: float, b: float) -> float:
        return max(b - a, 0.0) / dt  # a restarted counter starts again from 0

    return {
        "t": after.t,
        "requests_s": rate(before.requests, after.requests),
        "p99_ms": _ms(quantile(0.99, before.duration, after.duration)),
        "ttft_ms": _ms(quantile(0.5, before.ttft, after.ttft)),
        "tokens_s": rate(before.tokens, after.tokens),
        "rejections_s": rate(before.rejections, after.rejections),
    }


def _merged(by_label: dict[str, Buckets], aliases: Mapping[str, str]) -> dict[str, Buckets]:
    """Histograms by model, those of a label that ``aliases`` maps (a ``/v1`` id) added to its model's."""
    out: dict[str, Buckets] = {}
    for label, buckets in by_label.items():
        merged = out.setdefault(aliases.get(label, label), {})
        for le, count in buckets.items():
            merged[le] = merged.get(le, 0.0) + count
    return out


class Sampler:
    """Reads ``scrape()`` (the metrics text) every ``interval`` seconds on a thread; keeps ``window``
    seconds of chart points and the last minute of readings (each model's throughput and p50/p99).
    ``aliases``: front-door model labels that stand for a Triton model (a ``/v1`` id for the model it
    streams through)."""

    def __init__(
        self,
        scrape: Callable[[], str],
        interval: float = INTERVAL_S,
        window: float = WINDOW_S,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.scrape = scrape
        self.interval = interval
        self.aliases = dict(aliases or {})
        self.points: deque[dict[str, float | None]] = deque(maxlen=int(window / interval))
        self.recent: deque[Scrape] = deque(maxlen=max(int(60 / interval), 2))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="console-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.add(parse(self.scrape(), time.time()))
            except Exception as exc:  # the server restarting: a gap in the charts, not a dead sampler
                log.debug("console: metrics not read: %s", exc)
            self._stop.wait(max(self.interval - (time.monotonic() - started), 0.1))

    def add(self, scrape: Scrape) -> None:
        with self._lock:
            if self.recent:
                self.points.append(point(self.recent[-1], scrape))
            self.recent.append(scrape)

    def series(self, since: float = 0.0) -> dict[str, list[float | None]]:
        """The points after ``since`` (seconds since the epoch), one list per series (uPlot's columns)."""
        with self._lock:
            points = [p for p in self.points if p["t"] is not None and p["t"] > since]
        return {name: [p[name] for p in points] for name in ("t", *SERIES)}

    def models(self) -> dict[str, dict[str, float | None]]:
        """Per model over the last minute: inferences per second (Triton's count) and the p50/p99 duration
        in ms of the front door's requests that named it (None: none did)."""
        with self._lock:
            if not self.recent:
                return {}
            first, last = self.recent[0], self.recent[-1]
        dt = last.t - first.t
        out: dict[str, dict[str, float | None]] = {}
        for model, count in last.inferences.items():
            rate = max(count - first.inferences.get(model, 0.0), 0.0) / dt if dt > 0 else 0.0
            out[model] = {"throughput": rate, "p50": None, "p99": None}
        before = _merged(first.by_model, self.aliases)
        for model, after in _merged(last.by_model, self.aliases).items():
            row = out.setdefault(model, {"throughput": 0.0})
            row["p50"] = _ms(quantile(0.5, before.get(model, {}), after))
            row["p99"] = _ms(quantile(0.99, before.get(model, {}), after))
        return out
