"""Debian's real Prometheus against the real fleet under load: it scrapes the metrics port every second with
the committed rules, every recording rule and every dashboard query returns series (those over GPU metrics
run and parse, and say so when there are none), no rule fails to evaluate, the scrape serves only metrics
README lists, and a model process killed on purpose fires TritonfleetModelReloaded."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from openai import OpenAI

from tests.conftest import running_fleet, wait_for
from tritonfleet import pipelines
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.fleet import Fleet
from tritonfleet.frontdoor.keys import KeyFile
from tritonfleet.monitoring import catalog, dashboard, rules
from tritonfleet.monitoring.prometheus import Prometheus, api
from tritonfleet.server import free_port
from tritonfleet.tools import soak

pytestmark = pytest.mark.server

ABSENT_HERE = {"gpu": "no GPU on this machine", "batch": "no batch line answered yet"}


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, Prometheus, dict[str, str]]]:
    """A fleet of every pipeline with keys, Prometheus scraping it every second, and the load it served:
    a short soak over every pipeline (HTTP and gRPC), /v1 chat and embeddings, a batch of embeddings, a key
    over its rate, and malformed requests."""
    home = tmp_path_factory.mktemp("monitoring")
    keyfile = KeyFile(home / "keys.json")
    keys = {"load": keyfile.add("load"), "limited": keyfile.add("limited", rpm=2)}
    with running_fleet(home) as fleet:
        assert fleet.ports is not None
        prometheus = Prometheus(
            [f"127.0.0.1:{fleet.ports.metrics}"],
            REPOSITORY,
            port=free_port(),
            storage=home / "prometheus",
            interval="1s",
            log=home / "prometheus.log",
        )
        try:
            prometheus.start()
            load(fleet, keys)
            yield fleet, prometheus, keys
        finally:
            prometheus.stop()


def load(fleet: Fleet, keys: dict[str, str]) -> None:
    # Before and after the soak: a series' first sample has no rate.
    openai_round(fleet, keys["load"])
    refused_round(fleet, keys)
    os.environ["TRITONFLEET_API_KEY"] = keys["load"]  # the soak's clients send it
    try:
        result = soak.run(fleet, minutes=0.4, concurrency=4)
    finally:
        del os.environ["TRITONFLEET_API_KEY"]
    assert result["errors"] == 0, result["error_samples"]
    openai_round(fleet, keys["load"])
    refused_round(fleet, keys)
    time.sleep(5)  # a few more scrapes and rule evaluations after the last request


def openai_round(fleet: Fleet, key: str) -> None:
    """One request to each /v1 model (chat streamed, embeddings), and a batch of two embeddings."""
    with OpenAI(base_url=fleet.openai_url, api_key=key, max_retries=0, timeout=300) as client:
        embedding = next(m.id for m in pipelines.openai_models().values() if m.kind == "embedding")
        lines = "".join(
            json.dumps({"custom_id": str(i), "method": "POST", "url": "/v1/embeddings",
                        "body": {"model": embedding, "input": f"text {i}"}}) + "\n"
            for i in range(2)
        )  # fmt: skip
        file_id = client.files.create(file=("in.jsonl", lines.encode()), purpose="batch").id
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
        )
        for model in pipelines.openai_models().values():
            if model.kind == "chat":
                stream = client.chat.completions.create(
                    model=model.id,
                    messages=[{"role": "user", "content": "Name three primary colors."}],
                    max_tokens=8,
                    stream=True,
                )
                assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            else:
                assert client.embeddings.create(model=model.id, input=["a cat", "a dog"]).data
        done = wait_for(lambda: ended(client, batch.id), 300, "the batch")
        assert done.status == "completed" and done.request_counts.completed == 2


def ended(client: OpenAI, batch_id: str) -> Any:
    batch = client.batches.retrieve(batch_id)
    return batch if batch.status in ("completed", "failed", "expired", "cancelled") else None


def refused_round(fleet: Fleet, keys: dict[str, str]) -> None:
    """A key over its rate (2 a minute) and a malformed request."""
    url = f"http://{fleet.http_url}/v2/models/wine_sklearn"
    limited = [requests.get(url, headers={"Authorization": f"Bearer {keys['limited']}"}, timeout=30)
               for _ in range(6)]  # fmt: skip
    assert [r.status_code for r in limited].count(429) >= 3
    bad = requests.post(
        f"{url}/infer", data=b"{not json", headers={"Authorization": f"Bearer {keys['load']}"}, timeout=30
    )
    assert bad.status_code == 400


def series(prometheus: Prometheus, expr: str) -> list[dict[str, Any]]:
    return prometheus.query(expr)


def test_every_recording_rule_has_data(monitored) -> None:
    _, prometheus, _ = monitored
    empty_optional = []
    for record in rules.records(REPOSITORY):
        selector = "".join(f'{{{k}="{v}"}}' for k, v in record.labels.items())
        found = series(prometheus, record.name + selector)
        if record.needs:
            if not found:
                empty_optional.append(f"{record.name} ({ABSENT_HERE[record.needs]})")
            continue
        assert found, f"{record.name}{selector} recorded nothing"
        if record.name.startswith("pipeline:"):
            assert all(math.isfinite(float(s["value"][1])) for s in found), (record.name, found)
    print("recording rules with no series here:", *empty_optional, sep="\n  ")


def test_rules_record_what_the_load_did(monitored) -> None:
    _, prometheus, _ = monitored

    def values(expr: str) -> dict[str, float]:
        return {s["metric"].get("model") or s["metric"].get("key") or s["metric"].get("pipeline", ""):
                float(s["value"][1]) for s in series(prometheus, expr)}  # fmt: skip

    rates = values(
        'sum by (model) (model_key_status_class:tritonfleet_frontdoor_requests:rate1m{key="load"})'
    )
    # Every public model the soak probes, and the /v1 models by their OpenAI ids (the front door reads them).
    for name in ("image_classifier", "tensorrt_llm_bls", "text_embedding", "rag", *pipelines.openai_models()):
        assert rates.get(name, 0) > 0, (name, rates)
    slo = {p.name for p in pipelines.registry().values() if p.slo}
    assert set(values("pipeline:tritonfleet_frontdoor_request_duration_seconds:p99_5m")) == slo
    assert values('key:tritonfleet_frontdoor_rate_limited:ratio_rate5m{key="limited"}')["limited"] > 0
    assert values('key:tritonfleet_frontdoor_rate_limited:ratio_rate5m{key="load"}')["load"] == 0
    reasons = {
        s["metric"]["reason"] for s in series(prometheus, "reason:tritonfleet_frontdoor_rejections:rate1m")
    }
    assert {"rate", "malformed_json"} <= reasons, reasons
    assert values("model:tritonfleet_llm_generated_tokens:rate1m")["tensorrt_llm"] > 0
    assert values("model:tritonfleet_llm_prompt_tokens:rate1m")["tensorrt_llm"] > 0
    assert 0 <= values("instance_model:tritonfleet_llm_kv_cache_usage:ratio")["tensorrt_llm"] <= 1
    assert values("fleet:tritonfleet_frontdoor_errors:ratio_rate5m")[""] == 0


def test_no_rule_fails_to_evaluate(monitored) -> None:
    _, prometheus, _ = monitored
    groups = api(prometheus.url, "/api/v1/rules")["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert len(loaded) == len(rules.records(REPOSITORY)) + len(rules.alerts())
    broken = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    assert not broken, broken


def test_every_dashboard_query_returns_series(monitored) -> None:
    _, prometheus, _ = monitored
    empty_optional = []
    for panel in dashboard.panels():
        for expr, _ in panel.targets:
            found = series(prometheus, expr)  # parses, or the API's error fails the test
            if panel.needs:
                if not found:
                    empty_optional.append(f"{panel.title}: {expr} ({ABSENT_HERE[panel.needs]})")
                continue
            assert found, f"panel {panel.title!r}: {expr} returned no series"
    print("dashboard queries with no series here:", *empty_optional, sep="\n  ")


def test_the_scrape_serves_only_listed_metrics(monitored) -> None:
    fleet, _, _ = monitored
    assert fleet.ports is not None
    with urllib.request.urlopen(f"http://127.0.0.1:{fleet.ports.metrics}/metrics", timeout=30) as response:
        text = response.read().decode()
    # Series names as served (a parser would add _total to Triton's counters, which have none).
    names = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line and line[0] != "#"}
    unlisted = {catalog.scraped_name(n) for n in names} - set(catalog.by_name())
    assert not unlisted, f"served but not in tritonfleet/monitoring/catalog.py (and README): {unlisted}"
    cpu = {f.name for f in catalog.FAMILIES if f.target != "gpu" and not f.condition}
    assert cpu - {catalog.scraped_name(n) for n in names} == set(), "listed for the CPU but not served"


def test_a_killed_model_process_fires_the_reload_alert(monitored) -> None:
    fleet, prometheus, _ = monitored

    def reload_alerts() -> list[dict[str, Any]]:
        alerts = api(prometheus.url, "/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "TritonfleetModelReloaded"]

    assert reload_alerts() == []  # quiet on the load's real data
    pid = next(pid for pid, (model, _) in fleet.server.stub_models().items() if model == "wine_sklearn")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: fleet.supervisor and fleet.supervisor.recoveries, 120, "the supervisor's reload")
    firing = wait_for(
        lambda: [a for a in reload_alerts() if a["state"] == "firing"], 60, "TritonfleetModelReloaded firing"
    )
    assert [a["labels"]["model"] for a in firing] == ["wine_sklearn"]
    assert firing[0]["annotations"]["summary"].startswith(
        "The supervisor reloaded wine_sklearn on 127.0.0.1:"
    )


def test_prometheus_stops_with_nothing_left(tmp_path: Path) -> None:
    prometheus = Prometheus(["127.0.0.1:1"], REPOSITORY, port=free_port(), storage=tmp_path / "data").start()
    process = prometheus.process
    assert process is not None and api(prometheus.url, "/api/v1/status/config")["yaml"]
    prometheus.stop()
    assert process.poll() is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{prometheus.url}/-/ready", timeout=2)
