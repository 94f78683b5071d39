"""The Grafana dashboard of the fleet in production, generated (``docker/monitoring/dashboard.json``).

Panels read the recording rules of :mod:`tritonfleet.monitoring.rules` where one exists, the raw metrics
where a panel shows a gauge as it is. Queries use no Grafana variables but the data source, so each runs
as it is against Prometheus (the Prometheus test runs every one). ``needs`` marks panels whose metrics
only some deployments serve: "gpu" (Triton's ``nv_gpu_*`` on the GPU target) and "batch" (batch jobs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
UID = "tritonfleet"


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]  # (PromQL, legend)
    description: str = ""
    needs: str | None = None
    kind: str = "timeseries"


SECTIONS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    (
        "Traffic",
        (
            Panel(
                "Throughput by model",
                "reqps",
                (
                    (
                        "sum by (model) (model_key_status_class:tritonfleet_frontdoor_requests:rate1m)",
                        "{{model}}",
                    ),
                ),
                "Inference requests answered per second at the front door (HTTP, gRPC and /v1)",
            ),
            Panel(
                "Throughput by key",
                "reqps",
                (("sum by (key) (model_key_status_class:tritonfleet_frontdoor_requests:rate1m)", "{{key}}"),),
            ),
            Panel(
                "5xx ratio",
                "percentunit",
                (
                    ("model:tritonfleet_frontdoor_errors:ratio_rate5m", "{{model}}"),
                    ("fleet:tritonfleet_frontdoor_errors:ratio_rate5m", "fleet"),
                ),
            ),
            Panel(
                "Rejections by reason",
                "reqps",
                (("reason:tritonfleet_frontdoor_rejections:rate1m", "{{reason}}"),),
                "Requests the front door refused: rate limits, keys, invalid input, the server unavailable",
            ),
            Panel(
                "Rate-limited share by key",
                "percentunit",
                (("key:tritonfleet_frontdoor_rate_limited:ratio_rate5m", "{{key}}"),),
            ),
        ),
    ),
    (
        "Latency",
        (
            Panel(
                "Request duration p50 / p99",
                "s",
                (
                    ("model:tritonfleet_frontdoor_request_duration_seconds:p50_5m", "p50 {{model}}"),
                    ("model:tritonfleet_frontdoor_request_duration_seconds:p99_5m", "p99 {{model}}"),
                ),
                "At the front door, until a stream's last byte",
            ),
            Panel(
                "Pipeline p99 against its SLO",
                "s",
                (
                    ("pipeline:tritonfleet_frontdoor_request_duration_seconds:p99_5m", "p99 {{pipeline}}"),
                    ("pipeline:tritonfleet_slo_request_duration_seconds:p99", "SLO {{pipeline}}"),
                ),
            ),
            Panel(
                "Queue time",
                "s",
                (
                    ("model:nv_inference_queue_duration_seconds:mean1m", "mean {{model}}"),
                    ("model:tritonfleet_llm_queue_duration_seconds:p99_5m", "p99 LLM waves {{model}}"),
                ),
                "Triton's scheduling queue (mean per request) and the LLM's wait for a wave",
            ),
            Panel(
                "Queue depth",
                "short",
                (
                    ("model:nv_inference_pending_requests:sum", "{{model}}"),
                    ("sum by (model) (tritonfleet_llm_queue_size)", "LLM waiting {{model}}"),
                ),
            ),
            Panel("Average batch", "short", (("model:nv_inference_batch_size:mean1m", "{{model}}"),)),
        ),
    ),
    (
        "LLM",
        (
            Panel(
                "Time to first token p50 / p99",
                "s",
                (
                    ("model:tritonfleet_llm_time_to_first_token_seconds:p50_5m", "p50 {{model}}"),
                    ("model:tritonfleet_llm_time_to_first_token_seconds:p99_5m", "p99 {{model}}"),
                    ("pipeline:tritonfleet_slo_time_to_first_token_seconds:p99", "SLO {{pipeline}}"),
                ),
            ),
            Panel(
                "Inter-token latency p50 / p99",
                "s",
                (
                    ("model:tritonfleet_llm_inter_token_latency_seconds:p50_5m", "p50 {{model}}"),
                    ("model:tritonfleet_llm_inter_token_latency_seconds:p99_5m", "p99 {{model}}"),
                ),
            ),
            Panel(
                "Tokens per second",
                "short",
                (
                    ("model:tritonfleet_llm_generated_tokens:rate1m", "out {{model}}"),
                    ("model:tritonfleet_llm_prompt_tokens:rate1m", "in {{model}}"),
                    ("sum(key:tritonfleet_frontdoor_tokens:rate1m)", "/v1 (prompt + completion)"),
                ),
            ),
            Panel(
                "KV cache and sequence slots in use",
                "percentunit",
                (
                    ("instance_model:tritonfleet_llm_kv_cache_usage:ratio", "KV {{instance}} {{model}}"),
                    ("instance_model:tritonfleet_llm_sequences_usage:ratio", "slots {{instance}} {{model}}"),
                ),
            ),
        ),
    ),
    (
        "Resources",
        (
            Panel(
                "GPU memory in use",
                "percentunit",
                (("instance_gpu:nv_gpu_memory_usage:ratio", "{{instance}} {{gpu_uuid}}"),),
                needs="gpu",
            ),
            Panel(
                "GPU memory used",
                "bytes",
                (
                    ("nv_gpu_memory_used_bytes", "used {{instance}} {{gpu_uuid}}"),
                    ("nv_gpu_memory_total_bytes", "total {{instance}} {{gpu_uuid}}"),
                ),
                needs="gpu",
            ),
            Panel(
                "GPU utilisation",
                "percentunit",
                (("instance_gpu:nv_gpu_utilization:mean1m", "{{instance}} {{gpu_uuid}}"),),
                needs="gpu",
            ),
            Panel(
                "CPU utilisation and memory",
                "percentunit",
                (
                    ("instance:nv_cpu_utilization:mean1m", "CPU {{instance}}"),
                    ("instance:nv_cpu_memory_usage:ratio", "memory {{instance}}"),
                ),
            ),
        ),
    ),
    (
        "Health",
        (
            Panel(
                "Ready",
                "short",
                (("min by (instance) (tritonfleet_frontdoor_ready)", "{{instance}}"),),
                "1 while Triton is up and every public pipeline answers its probe",
                kind="stat",
            ),
            Panel(
                "Recoveries (1 h)",
                "short",
                (("kind_model:tritonfleet_frontdoor_recoveries:increase1h", "{{kind}} {{model}}"),),
                "Server restarts and model reloads by the supervisor",
            ),
            Panel(
                "Triton failures",
                "reqps",
                (("model_reason:nv_inference_request_failure:rate1m", "{{model}} {{reason}}"),),
            ),
        ),
    ),
    (
        "Batch jobs",
        (
            Panel(
                "Batch lines answered",
                "short",
                (("status:tritonfleet_batch_results:rate1m", "{{status}}"),),
                needs="batch",
            ),
            Panel(
                "Batch lines waiting",
                "short",
                (("fleet:tritonfleet_batch_queue_depth:max", "waiting"),),
                needs="batch",
            ),
        ),
    ),
)


def panels() -> list[Panel]:
    return [p for _, section in SECTIONS for p in section]


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(panel.targets)
        ],
    }


def document() -> dict[str, Any]:
    """The dashboard as Grafana imports or provisions it."""
    out, pid, y = [], 1, 0
    for title, section in SECTIONS:
        out.append(
            {
                "id": pid,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        pid, y = pid + 1, y + 1
        for i, panel in enumerate(section):
            out.append(_panel(panel, pid, 12 * (i % 2), y + 8 * (i // 2)))
            pid += 1
        y += 8 * ((len(section) + 1) // 2)
    return {
        "uid": UID,
        "title": "tritonfleet",
        "description": "The model fleet: traffic, latency against each pipeline's SLO, the LLM, resources",
        "tags": ["tritonfleet", "triton"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": out,
    }


def text() -> str:
    """:func:`document` as ``dashboard.json`` holds it (what Grafana imports, the ConfigMap's data)."""
    return json.dumps(document(), indent=2) + "\n"


GRAFANA_DASHBOARDS = "/var/lib/grafana/dashboards"  # where the compose file mounts dashboard.json


def provisioning(prometheus_url: str) -> dict[str, dict[str, Any]]:
    """Grafana's provisioning files (``/etc/grafana/provisioning/<kind>/tritonfleet.yml``) that load the
    dashboard from ``GRAFANA_DASHBOARDS`` over a default Prometheus data source at ``prometheus_url``; the
    dashboard's ``datasource`` variable picks the default one."""
    source = {"name": "Prometheus", "type": "prometheus", "access": "proxy", "url": prometheus_url}
    provider = {"name": "tritonfleet", "type": "file", "allowUiUpdates": False}
    return {
        "datasources": {"apiVersion": 1, "datasources": [{**source, "isDefault": True}]},
        "dashboards": {"apiVersion": 1, "providers": [{**provider, "options": {"path": GRAFANA_DASHBOARDS}}]},
    }
