"""The monitoring files without a fleet: docker/monitoring/ is what the registry generates, promtool accepts
the configs and rules, its unit tests (tests/monitoring/rules_test.yml) fire and stay quiet for every alert,
the dashboard's queries parse and read recorded series, README lists every metric."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tritonfleet import pipelines
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.monitoring import catalog, dashboard, generated, prometheus, rules

ROOT = REPOSITORY.parent
UNIT_TESTS = Path(__file__).with_name("rules_test.yml")


def promtool(*args: str, cwd: Path = ROOT) -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: scripts/setup.sh installs Debian's prometheus package"
    done = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_committed_files_are_what_the_registry_generates() -> None:
    for path, text in generated(REPOSITORY).items():
        committed = (ROOT / path).read_text()
        assert committed == text, f"{path} is stale: run `python -m tritonfleet.monitoring`"


def test_promtool_accepts_the_configs_and_the_rules(tmp_path: Path) -> None:
    assert "SUCCESS" in promtool("check", "config", "docker/monitoring/prometheus.yml")
    out = promtool("check", "rules", "docker/monitoring/rules.yml")
    assert f"SUCCESS: {len(rules.records(REPOSITORY)) + len(rules.alerts())} rules found" in out
    # The config `fleet serve --prometheus` runs with, and the rules it writes beside it.
    runner = prometheus.Prometheus(["localhost:8002"], REPOSITORY, interval="1s")
    assert "SUCCESS" in promtool("check", "config", str(runner.write_config(tmp_path)))


def test_promtool_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", UNIT_TESTS.name, cwd=UNIT_TESTS.parent)


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    fires, quiet = set(), set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {a.name for a in rules.alerts()}
    assert names - fires == set(), "alerts no unit test fires"
    assert names - quiet == set(), "alerts no unit test expects quiet"


def test_every_pipeline_objective_is_recorded_and_a_new_pipeline_gets_its_alert(monkeypatch) -> None:
    with_slo = {p.name: p.slo for p in pipelines.registry().values() if p.slo}
    assert with_slo, "no pipeline declares an SLO"
    recorded = {(r.name, r.labels.get("pipeline")): r.expr for r in rules.slo(REPOSITORY)}
    for name, slo in with_slo.items():
        assert recorded[("pipeline:tritonfleet_slo_request_duration_seconds:p99", name)] == (
            f"vector({slo.p99_seconds})"
        )
        assert ("pipeline:tritonfleet_frontdoor_request_duration_seconds:p99_5m", name) in recorded
    # A pipeline declared tomorrow: its objective and its p99 over its own models, no rule edited.
    new = dataclasses.replace(
        pipelines.get("tabular"), name="fraud", public=("wine_sklearn",), slo=pipelines.Slo(0.02)
    )
    every = {**pipelines.registry(), "fraud": new}
    monkeypatch.setattr(pipelines, "registry", lambda: every)
    records = {(r.name, r.labels.get("pipeline")): r.expr for r in rules.slo(REPOSITORY)}
    assert records[("pipeline:tritonfleet_slo_request_duration_seconds:p99", "fraud")] == "vector(0.02)"
    assert (
        'model=~"wine_sklearn"'
        in records[("pipeline:tritonfleet_frontdoor_request_duration_seconds:p99_5m", "fraud")]
    )


def test_rules_that_need_gpu_or_batch_metrics_say_so() -> None:
    for r in [*rules.records(REPOSITORY), *rules.alerts()]:
        optional = "nv_gpu_" in r.expr or "tritonfleet_batch_" in r.expr or ":nv_gpu_" in r.expr
        assert bool(r.needs) == optional, r.name


def test_dashboard_queries_parse_and_read_recorded_series(tmp_path: Path) -> None:
    recorded = {r.name for r in rules.records(REPOSITORY)}
    queries = [expr for p in dashboard.panels() for expr, _ in p.targets]
    for expr in queries:
        used = set(re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b", expr))
        assert used <= recorded, f"{expr} reads series no rule records: {used - recorded}"
    # promtool parses each query as a recording rule's expression.
    check = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e}
                                                         for i, e in enumerate(queries)]}]}  # fmt: skip
    (tmp_path / "queries.yml").write_text(yaml.safe_dump(check))
    assert f"SUCCESS: {len(queries)} rules found" in promtool("check", "rules", str(tmp_path / "queries.yml"))
    board = json.loads((ROOT / "docker/monitoring/dashboard.json").read_text())
    titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
    wanted_titles = ("Throughput", "p50 / p99", "Queue time", "Time to first token", "Inter-token",
                     "Tokens per", "GPU memory", "GPU utilisation", "Rejections", "Recoveries")  # fmt: skip
    for wanted in wanted_titles:
        assert any(wanted in t for t in titles), wanted
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_readme_lists_every_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [f.name for f in catalog.FAMILIES if f"`{f.name}`" not in readme]
    assert not missing, f"README's Monitoring section lacks {missing}"


@pytest.mark.parametrize(
    ("series", "family"),
    [("tritonfleet_llm_time_to_first_token_seconds_bucket", "tritonfleet_llm_time_to_first_token_seconds"),
     ("tritonfleet_frontdoor_requests_total", "tritonfleet_frontdoor_requests_total"),
     ("nv_inference_count", "nv_inference_count"), ("nv_inference_count_sum", "nv_inference_count_sum"),
     ("nv_inference_queue_summary_us_count", "nv_inference_queue_summary_us"),
     ("nv_inference_queue_summary_us_bucket", "nv_inference_queue_summary_us_bucket")],
)  # fmt: skip
def test_scraped_series_map_to_their_family(series: str, family: str) -> None:
    assert catalog.scraped_name(series) == family
