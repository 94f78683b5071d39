"""The fleet's Prometheus recording and alerting rules, generated from the pipeline registry.

Recording rules are named ``level:metric:operations`` (Prometheus' convention: the labels kept, the metric,
what was done to it). Latency quantiles come from histograms summed over replicas by ``le``. Each pipeline
that declares an :class:`~tritonfleet.pipelines.Slo` gets its p99 (and time-to-first-token p99) recorded
under its name beside its objective as a constant series, and one alert compares the two for every
pipeline: a new pipeline gets its alert from its declaration. ``docker/monitoring/rules.yml`` is this
module's output (``python -m tritonfleet.monitoring`` writes it; a test checks it is current).

Rules over metrics that only some deployments serve carry ``needs``: "gpu" (``nv_gpu_*``, TensorRT-LLM's
``nv_trt_llm_*``) and "batch" (the batch jobs' ``tritonfleet_batch_*``). Absent, they record nothing and
raise no error; the Prometheus test expects data from every other rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonfleet import pipelines
from tritonfleet.frontdoor.policy import MODEL_ROUTES
from tritonfleet.repository import Repository

# Front-door routes that run a model (HTTP infer/generate, /v1, gRPC ModelInfer/ModelStreamInfer), and
# those requests where the model is known.
ROUTES = f'route=~"{"|".join(MODEL_ROUTES)}"'
INFERENCE = f'{ROUTES},model!~"|-"'
SERVED = 'route!~"metrics|health"'  # every answered request but scrapes of the metrics port
REQUESTS = "tritonfleet_frontdoor_requests_total"
DURATION = "tritonfleet_frontdoor_request_duration_seconds_bucket"
# The batch jobs' metrics (tritonfleet/batch/metrics.py): lines answered by outcome, lines waiting.
BATCH_RESULTS = "tritonfleet_batch_results_total"
BATCH_QUEUE = "tritonfleet_batch_queue_depth"
# Targets scraped as the fleet: "tritonfleet" here, "<namespace>/tritonfleet" through a PodMonitor.
JOB = 'job=~"(.*/)?tritonfleet"'


@dataclass(frozen=True)
class Record:
    name: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)
    needs: str | None = None  # "gpu" or "batch": data only where those metrics are served

    def rule(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record": self.name, "expr": self.expr}
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    summary: str
    severity: str = "warning"
    for_: str | None = None
    needs: str | None = None

    def rule(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alert": self.name, "expr": self.expr}
        if self.for_:
            out["for"] = self.for_
        out["labels"] = {"severity": self.severity}
        out["annotations"] = {"summary": self.summary}
        return out


def _quantiles(level: str, metric: str, by: str, selector: str = "") -> list[Record]:
    """p50 and p99 over 5 minutes of a histogram, summed over replicas by ``by`` and ``le``."""
    rate = f"rate({metric}_bucket{{{selector}}}[5m])" if selector else f"rate({metric}_bucket[5m])"
    return [
        Record(f"{level}:{metric}:p{int(q * 100)}_5m", f"histogram_quantile({q}, sum by ({by}, le) ({rate}))")
        for q in (0.5, 0.99)
    ]


def _ratio_or_zero(by: str, part: str, whole: str, window: str) -> str:
    """``part / whole`` summed by ``by``; 0, not absent, while ``part`` has no series (no errors yet)."""
    top = f"sum by ({by}) (rate({REQUESTS}{{{part}}}[{window}]))"
    bottom = f"sum by ({by}) (rate({REQUESTS}{{{whole}}}[{window}]))"
    return f"({top} or {bottom} * 0) / {bottom}"


def frontdoor() -> list[Record]:
    served = f"sum(rate({REQUESTS}{{{SERVED}}}[5m]))"
    fleet_errors = f'(sum(rate({REQUESTS}{{{SERVED},status_class="5xx"}}[5m])) or {served} * 0) / {served}'
    return [
        Record(
            f"model_key_status_class:{REQUESTS.removesuffix('_total')}:rate1m",
            f"sum by (model, key, status_class) (rate({REQUESTS}{{{INFERENCE}}}[1m]))",
        ),
        Record(
            "model:tritonfleet_frontdoor_errors:ratio_rate5m",
            _ratio_or_zero("model", f'{INFERENCE},status_class="5xx"', INFERENCE, "5m"),
        ),
        Record("fleet:tritonfleet_frontdoor_errors:ratio_rate5m", fleet_errors),
        *_quantiles("model", "tritonfleet_frontdoor_request_duration_seconds", "model", INFERENCE),
        Record(
            "reason:tritonfleet_frontdoor_rejections:rate1m",
            "sum by (reason) (rate(tritonfleet_frontdoor_rejections_total[1m]))",
        ),
        Record(
            "key:tritonfleet_frontdoor_rate_limited:ratio_rate5m",
            _ratio_or_zero("key", f'{SERVED},status=~"429|RESOURCE_EXHAUSTED"', f'{SERVED},key!="-"', "5m"),
        ),
        Record(
            "kind_model:tritonfleet_frontdoor_recoveries:increase1h",
            "sum by (kind, model) (increase(tritonfleet_frontdoor_recoveries_total[1h]))",
        ),
        Record(
            "key:tritonfleet_frontdoor_tokens:rate1m",
            "sum by (key) (rate(tritonfleet_frontdoor_tokens_total[1m]))",
        ),
    ]


def llm() -> list[Record]:
    kv_gpu = (
        'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="used"} / ignoring (kv_cache_block_type) '
        'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="max"}'
    )
    rows_gpu = (
        'nv_trt_llm_request_metrics{request_type="active"} / ignoring (request_type) '
        'nv_trt_llm_request_metrics{request_type="max"}'
    )
    return [
        *_quantiles("model", "tritonfleet_llm_time_to_first_token_seconds", "model"),
        *_quantiles("model", "tritonfleet_llm_inter_token_latency_seconds", "model"),
        *_quantiles("model", "tritonfleet_llm_queue_duration_seconds", "model"),
        Record(
            "model:tritonfleet_llm_generated_tokens:rate1m",
            "sum by (model) (rate(tritonfleet_llm_generated_tokens_total[1m]))",
        ),
        Record(
            "model:tritonfleet_llm_prompt_tokens:rate1m",
            "sum by (model) (rate(tritonfleet_llm_prompt_tokens_total[1m]))",
        ),
        # Per replica (a full cache is one replica's); the CPU engine's gauges, else TensorRT-LLM's blocks.
        Record(
            "instance_model:tritonfleet_llm_kv_cache_usage:ratio",
            f"tritonfleet_llm_kv_cache_used_tokens / tritonfleet_llm_kv_cache_capacity_tokens or {kv_gpu}",
        ),
        Record(
            "instance_model:tritonfleet_llm_sequences_usage:ratio",
            f"tritonfleet_llm_active_sequences / tritonfleet_llm_max_sequences or {rows_gpu}",
        ),
    ]


def _mean(name: str, total: str, count: str, scale: str = "") -> Record:
    """Mean per request over a minute: a cumulative total's rate over the requests' rate (none: no series)."""
    expr = f"sum by (model) (rate({total}[1m])) / (sum by (model) (rate({count}[1m])) > 0){scale}"
    return Record(name, expr)


def triton() -> list[Record]:
    success = "nv_inference_request_success"
    return [
        Record("model:nv_inference_request_success:rate1m", f"sum by (model) (rate({success}[1m]))"),
        Record(
            "model_reason:nv_inference_request_failure:rate1m",
            "sum by (model, reason) (rate(nv_inference_request_failure[1m]))",
        ),
        _mean(
            "model:nv_inference_queue_duration_seconds:mean1m",
            "nv_inference_queue_duration_us",
            success,
            " / 1e6",
        ),
        _mean(
            "model:nv_inference_request_duration_seconds:mean1m",
            "nv_inference_request_duration_us",
            success,
            " / 1e6",
        ),
        _mean("model:nv_inference_batch_size:mean1m", "nv_inference_count", "nv_inference_exec_count"),
        Record(
            "model:nv_inference_pending_requests:sum", "sum by (model) (nv_inference_pending_request_count)"
        ),
        Record("instance:nv_cpu_utilization:mean1m", "avg_over_time(nv_cpu_utilization[1m])"),
        Record("instance:nv_cpu_memory_usage:ratio", "nv_cpu_memory_used_bytes / nv_cpu_memory_total_bytes"),
        Record(
            "instance_gpu:nv_gpu_utilization:mean1m", "avg_over_time(nv_gpu_utilization[1m])", needs="gpu"
        ),
        Record(
            "instance_gpu:nv_gpu_memory_usage:ratio",
            "nv_gpu_memory_used_bytes / nv_gpu_memory_total_bytes",
            needs="gpu",
        ),
    ]


def batch() -> list[Record]:
    return [
        Record(
            "status:tritonfleet_batch_results:rate1m",
            f"sum by (status) (rate({BATCH_RESULTS}[1m]))",
            needs="batch",
        ),
        # Every replica reports the shared store's depth: the fleet's is the largest, not their sum.
        Record("fleet:tritonfleet_batch_queue_depth:max", f"max({BATCH_QUEUE})", needs="batch"),
    ]


def _regex(names: list[str]) -> str:
    """An alternation of model names (letters, digits, ``_.-``) for a PromQL ``=~``: dots escaped the way a
    PromQL string carries a backslash."""
    if any(not re.fullmatch(r"[A-Za-z0-9_.\-]+", n) for n in names):
        raise ValueError(f"model names must be letters, digits, '_', '.' or '-': {names}")
    return "|".join(dict.fromkeys(n.replace(".", "\\\\.") for n in names))


def slo(repository: Path) -> list[Record]:
    """Per pipeline with an objective: its p99 at the front door, its TTFT p99, and the objectives."""
    repo = Repository(repository)
    records = []
    for p in pipelines.registry().values():
        if p.slo is None:
            continue
        label = {"pipeline": p.name}
        models = _regex([*p.public, *(m.id for m in p.openai)])
        selector = f'{ROUTES},model=~"{models}"'
        records += [
            Record(
                "pipeline:tritonfleet_frontdoor_request_duration_seconds:p99_5m",
                f"histogram_quantile(0.99, sum by (le) (rate({DURATION}{{{selector}}}[5m])))",
                label,
            ),
            Record(
                "pipeline:tritonfleet_slo_request_duration_seconds:p99", f"vector({p.slo.p99_seconds})", label
            ),
        ]
        if p.slo.ttft_p99_seconds is not None:
            steps = _regex(sorted(repo.closure(list(p.public), "cpu")))
            ttft = f'rate(tritonfleet_llm_time_to_first_token_seconds_bucket{{model=~"{steps}"}}[5m])'
            records += [
                Record(
                    "pipeline:tritonfleet_llm_time_to_first_token_seconds:p99_5m",
                    f"histogram_quantile(0.99, sum by (le) ({ttft}))",
                    label,
                ),
                Record(
                    "pipeline:tritonfleet_slo_time_to_first_token_seconds:p99",
                    f"vector({p.slo.ttft_p99_seconds})",
                    label,
                ),
            ]
    return records


def alerts() -> list[Alert]:
    return [
        Alert(
            "TritonfleetDown",
            f"up{{{JOB}}} == 0",
            "The fleet's metrics port at {{ $labels.instance }} does not answer",
            "critical",
            "1m",
        ),
        Alert(
            "TritonfleetNotReady",
            "tritonfleet_frontdoor_ready == 0",
            "{{ $labels.instance }} is not ready: Triton is down or a public pipeline fails its probe",
            "critical",
            "2m",
        ),
        Alert(
            "TritonfleetModelReloaded",
            'increase(tritonfleet_frontdoor_recoveries_total{kind="model_reload"}[15m]) > 0',
            "The supervisor reloaded {{ $labels.model }} on {{ $labels.instance }} (its model process died)",
        ),
        Alert(
            "TritonfleetServerRestarted",
            'increase(tritonfleet_frontdoor_recoveries_total{kind="server_restart"}[15m]) > 0',
            "The supervisor restarted tritonserver on {{ $labels.instance }}",
        ),
        Alert(
            "TritonfleetLatencyOverSLO",
            "pipeline:tritonfleet_frontdoor_request_duration_seconds:p99_5m > on (pipeline) "
            "pipeline:tritonfleet_slo_request_duration_seconds:p99",
            "{{ $labels.pipeline }}'s p99 request duration is {{ $value | humanizeDuration }}, over its SLO",
            for_="10m",
        ),
        Alert(
            "TritonfleetTimeToFirstTokenOverSLO",
            "pipeline:tritonfleet_llm_time_to_first_token_seconds:p99_5m > on (pipeline) "
            "pipeline:tritonfleet_slo_time_to_first_token_seconds:p99",
            "{{ $labels.pipeline }}'s p99 time to first token is {{ $value | humanizeDuration }}, "
            "over its SLO",
            for_="10m",
        ),
        Alert(
            "TritonfleetErrorRatioHigh",
            "fleet:tritonfleet_frontdoor_errors:ratio_rate5m > 0.05",
            "{{ $value | humanizePercentage }} of the fleet's answers are 5xx",
            "critical",
            "5m",
        ),
        Alert(
            "TritonfleetModelErrorRatioHigh",
            "model:tritonfleet_frontdoor_errors:ratio_rate5m > 0.05",
            "{{ $value | humanizePercentage }} of {{ $labels.model }}'s answers are 5xx",
            for_="5m",
        ),
        Alert(
            "TritonfleetRateLimited",
            "key:tritonfleet_frontdoor_rate_limited:ratio_rate5m > 0.1",
            "{{ $value | humanizePercentage }} of key {{ $labels.key }}'s requests are over its rate limit",
            "info",
            "10m",
        ),
        Alert(
            "TritonfleetKVCacheNearlyFull",
            "instance_model:tritonfleet_llm_kv_cache_usage:ratio > 0.9",
            "{{ $labels.model }}'s KV cache on {{ $labels.instance }} is {{ $value | humanizePercentage }} "
            "full",
            for_="5m",
        ),
        Alert(
            "TritonfleetGPUMemoryHigh",
            "instance_gpu:nv_gpu_memory_usage:ratio > 0.9",
            "GPU {{ $labels.gpu_uuid }} on {{ $labels.instance }} has {{ $value | humanizePercentage }} "
            "of its memory in use",
            for_="10m",
            needs="gpu",
        ),
        Alert(
            "TritonfleetBatchLinesFailing",
            f'sum(rate({BATCH_RESULTS}{{status="failed"}}[10m])) / sum(rate({BATCH_RESULTS}[10m])) > 0.05',
            "{{ $value | humanizePercentage }} of batch lines fail",
            for_="10m",
            needs="batch",
        ),
    ]


def groups(repository: Path) -> dict[str, list[Record]]:
    return {
        "tritonfleet.frontdoor": frontdoor(),
        "tritonfleet.llm": llm(),
        "tritonfleet.triton": triton(),
        "tritonfleet.batch": batch(),
        "tritonfleet.pipelines": slo(repository),
    }


def records(repository: Path) -> list[Record]:
    return [r for group in groups(repository).values() for r in group]


def document(repository: Path) -> dict[str, Any]:
    """The rules file as Prometheus reads it."""
    out = [{"name": name, "rules": [r.rule() for r in rs]} for name, rs in groups(repository).items()]
    out.append({"name": "tritonfleet.alerts", "rules": [a.rule() for a in alerts()]})
    return {"groups": out}
