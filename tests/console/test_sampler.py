"""The fleet page's history: rates and quantiles from readings of the front door's real metrics registry."""

from __future__ import annotations

import math

import pytest

from tritonfleet.console.sampler import Sampler, parse, point, quantile
from tritonfleet.frontdoor.metrics import Metrics


def test_quantile_interpolates_within_the_bucket_as_prometheus_does() -> None:
    before = {0.1: 0.0, 0.5: 0.0, 1.0: 0.0, math.inf: 0.0}
    after = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}  # 50 <= 0.1 s, 40 in (0.1, 0.5], 10 above
    assert quantile(0.5, before, after) == pytest.approx(0.1)
    assert quantile(0.7, before, after) == pytest.approx(0.1 + 0.4 * 20 / 40)
    assert quantile(0.99, before, after) == pytest.approx(0.5 + 0.5 * 9 / 10)
    assert quantile(0.5, after, after) is None  # no new observation in the interval


def work(metrics: Metrics, route: str, model: str, seconds: float) -> None:
    """One answered request, as the front door counts it."""
    metrics.request("http", route, model, "-", 200)
    metrics.observe("http", route, model, seconds)


def readings() -> tuple[str, str]:
    """Two metrics texts of the front door's registry, 3 requests that ran a model and 1 rejection apart."""
    metrics = Metrics()
    metrics.request("http", "metrics", "", "-", 200)  # a scrape, not work for a model: not counted
    metrics.observe("http", "metrics", "", 5.0)
    first = metrics.text().decode()
    work(metrics, "infer", "wine_sklearn", 0.004)
    work(metrics, "infer", "wine_sklearn", 0.04)
    work(metrics, "openai", "smollm2-135m-instruct", 0.4)
    metrics.rejections.labels("invalid").inc()
    return first, metrics.text().decode()


def test_a_point_is_the_rates_of_its_interval() -> None:
    first, second = readings()
    p = point(parse(first, 100.0), parse(second, 102.0))
    assert p["requests_s"] == pytest.approx(1.5) and p["rejections_s"] == pytest.approx(0.5)
    # The 3rd of 3 in the (0.25, 0.5] bucket: 0.99 * 3 = 2.97, so 0.25 + 0.25 * 0.97.
    assert p["p99_ms"] == pytest.approx((0.25 + 0.25 * 0.97) * 1000)
    assert p["ttft_ms"] is None and p["tokens_s"] == 0.0


def test_each_model_gets_its_p50_and_p99_with_its_v1_id_counted_for_it() -> None:
    first, second = readings()
    sampler = Sampler(lambda: first, aliases={"smollm2-135m-instruct": "ensemble"})
    sampler.add(parse(first, 100.0))
    sampler.add(parse(second, 102.0))
    models = sampler.models()
    # wine_sklearn: 4 ms (in (0.0025, 0.005]) and 40 ms (in (0.025, 0.05]); the median is the first's bound.
    assert models["wine_sklearn"]["p50"] == pytest.approx(5.0)
    assert models["wine_sklearn"]["p99"] == pytest.approx((0.025 + 0.025 * 0.98) * 1000)
    assert models["ensemble"]["p50"] == pytest.approx((0.25 + 0.25 * 0.5) * 1000)
    assert "smollm2-135m-instruct" not in models


def test_the_ring_keeps_15_minutes_and_gives_what_is_new() -> None:
    first, second = readings()
    sampler = Sampler(lambda: first, interval=2.0, window=900)
    for i in range(500):
        sampler.add(parse(first if i % 2 else second, 1000.0 + 2 * i))
    series = sampler.series()
    assert len(series["t"]) == 450 and series["t"][-1] == 1998.0
    assert sampler.series(since=1994.0)["t"] == [1996.0, 1998.0]
    assert set(series) == {"t", "requests_s", "p99_ms", "ttft_ms", "tokens_s", "rejections_s"}
