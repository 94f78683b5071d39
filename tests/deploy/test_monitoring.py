"""The autoscaler's metric and the compose stack's Prometheus, checked by Prometheus' own promtool
(Debian's prometheus package, scripts/setup.sh): the adapter's query as the adapter renders it, on
synthetic series whose answer is known; the compose file's wiring to docker/monitoring/."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tritonfleet.deploy import adapter, image

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool missing (scripts/setup.sh installs it)"
)


def adapter_rules() -> list[dict]:
    (doc,) = yaml.safe_load_all((DOCKER / "k8s" / "prometheus-adapter-rules.yaml").read_text())
    return yaml.safe_load(doc["data"]["config.yaml"])["rules"]


def recording_rules(tmp_path: Path) -> Path:
    """The adapter's query for the pods of namespace default, as a recording rule promtool can load."""
    (rule,) = adapter_rules()
    expr = adapter.render(rule["metricsQuery"], 'namespace="default",pod=~"tritonfleet-.*"', "pod")
    path = tmp_path / "adapter.rules.yml"
    record = {"record": f"pod:{rule['name']['as']}", "expr": expr}
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": [record]}]}))
    return path


@needs_promtool
def test_adapter_query_is_valid_promql(tmp_path: Path) -> None:
    result = subprocess.run([promtool, "check", "rules", str(recording_rules(tmp_path))],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rules found" in result.stdout


@needs_promtool
def test_adapter_query_is_the_mean_queue_time_per_request(tmp_path: Path) -> None:
    """Pod a: 10 requests/s on efficientnet_lite0 waiting 5 ms each, plus an ensemble that never queues
    for a GPU (left out); pod b: idle (no value, so nothing to scale for)."""
    rules = recording_rules(tmp_path)
    lab = 'namespace="default",pod="tritonfleet-a"'
    idle = 'namespace="default",pod="tritonfleet-b"'
    tests = {
        "rule_files": [rules.name],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": [
                {"series": f'nv_inference_queue_duration_us{{{lab},model="efficientnet_lite0"}}',
                 "values": "0+750000x40"},  # 150 requests x 5000 us per 15 s
                {"series": f'nv_inference_request_success{{{lab},model="efficientnet_lite0"}}',
                 "values": "0+150x40"},
                {"series": f'nv_inference_queue_duration_us{{{lab},model="image_classifier"}}',
                 "values": "0+99000000x40"},
                {"series": f'nv_inference_request_success{{{lab},model="image_classifier"}}',
                 "values": "0+1x40"},
                {"series": f'nv_inference_queue_duration_us{{{idle},model="efficientnet_lite0"}}',
                 "values": "5000x40"},
                {"series": f'nv_inference_request_success{{{idle},model="efficientnet_lite0"}}',
                 "values": "1x40"},
            ],
            "promql_expr_test": [{
                "expr": f"pod:{adapter.METRIC}",
                "eval_time": "8m",
                "exp_samples": [{"labels": f'pod:{adapter.METRIC}{{pod="tritonfleet-a"}}', "value": 5000}],
            }],
        }],
    }  # fmt: skip
    (tmp_path / "adapter.test.yml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([promtool, "test", "rules", "adapter.test.yml"], cwd=tmp_path,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_builds_from_the_pin_and_sizes_shm() -> None:
    services = compose()["services"]
    args = services["tritonfleet"]["build"]["args"]
    pinned = image.read_env()
    for name, value in args.items():
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", value) and name in pinned, name
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert set(args) == set(re.findall(r"^ARG ([A-Z_]+)$", dockerfile, re.MULTILINE)) & set(pinned)
    assert (DOCKER / ".env").resolve() == (DOCKER / "image.env").resolve()
    front = services["tritonfleet"]
    assert re.fullmatch(r"\d+gb", front["shm_size"]) and int(front["shm_size"][:-2]) >= 1
    assert {p.split(":")[0] for p in front["ports"]} == {"8000", "8001", "8002"}
    (gpu,) = front["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert any(v.endswith(":/etc/tritonfleet/keys.json:ro") for v in front["volumes"])


def test_compose_prometheus_uses_docker_monitoring() -> None:
    prometheus = compose()["services"]["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"] if v.startswith("./"))
    assert mounts == {"./monitoring/prometheus.yml": "/etc/prometheus/prometheus.yml",
                      "./monitoring/rules.yml": "/etc/prometheus/rules.yml"}  # fmt: skip
    config = DOCKER / "monitoring" / "prometheus.yml"
    targets = [t for job in yaml.safe_load(config.read_text())["scrape_configs"]
               for sc in job.get("static_configs", []) for t in sc["targets"]]  # fmt: skip
    assert "tritonfleet:8002" in targets  # the compose service's metrics port: Triton's and the front door's
    if promtool is not None:
        result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_compose_grafana_provisions_the_dashboard_over_its_prometheus() -> None:
    """Grafana reads provisioning files from /etc/grafana/provisioning/{datasources,dashboards}/; the
    dashboard provider's folder holds dashboard.json, and the data source is the compose Prometheus."""
    services = compose()["services"]
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./monitoring/grafana/datasources.yml"].startswith("/etc/grafana/provisioning/datasources/")
    assert mounts["./monitoring/grafana/dashboards.yml"].startswith("/etc/grafana/provisioning/dashboards/")
    for source in mounts:
        assert (DOCKER / source).is_file(), source
    grafana_files = DOCKER / "monitoring" / "grafana"
    (provider,) = yaml.safe_load((grafana_files / "dashboards.yml").read_text())["providers"]
    assert provider["type"] == "file"
    assert Path(mounts["./monitoring/dashboard.json"]).parent == Path(provider["options"]["path"])
    (source,) = yaml.safe_load((grafana_files / "datasources.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"]
    host, port = source["url"].removeprefix("http://").split(":")
    assert host in services and f"{port}:{port}" in services[host]["ports"]
    assert "prometheus" in grafana["depends_on"]
