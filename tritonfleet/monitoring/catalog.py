"""Every metric family the fleet's metrics port serves, in one list: README's table comes from it and the
Prometheus test checks that a live scrape serves nothing it lacks.

Four sources share the port: Triton's own ``nv_*`` (per model; ``nv_gpu_*`` only on the GPU target,
``nv_trt_llm_*`` only from TensorRT-LLM's backend there), the CPU LLM's ``tritonfleet_llm_*`` (custom
metrics of ``model_repository/tensorrt_llm/1/model.py``, through Triton), the front door's
``tritonfleet_frontdoor_*`` (``tritonfleet/frontdoor/metrics.py``) and the batch jobs'
``tritonfleet_batch_*`` (``tritonfleet/batch/metrics.py``, served with ``/v1``).
"""

from __future__ import annotations

from dataclasses import dataclass

TRITON, LLM, FRONTDOOR, BATCH = "Triton", "CPU LLM", "front door", "batch jobs"


@dataclass(frozen=True)
class Family:
    name: str  # as scraped (a histogram's base name: it comes as _bucket, _sum and _count)
    kind: str  # counter, gauge or histogram
    labels: tuple[str, ...]
    source: str
    help: str
    target: str = "both"  # "cpu", "gpu" or "both": where it is served
    condition: str = ""  # served only when this is set (a server flag)


def _triton(name: str, kind: str, help: str, labels: tuple[str, ...] = ("model", "version"), target="both"):
    return Family(name, kind, labels, TRITON, help, target)


SUMMARIES = "--metrics-config=summary_latencies=true"


def _summary(stage: str, what: str) -> Family:
    """Triton's per-model latency summaries (quantiles per replica: they do not add up over replicas, so the
    rules read the histograms and the cumulative counters instead)."""
    name = f"nv_inference_{stage}_summary_us"
    return Family(name, "summary", ("model", "version", "quantile"), TRITON, f"{what} quantiles (µs)",
                  condition=SUMMARIES)  # fmt: skip


FAMILIES: tuple[Family, ...] = (
    _triton("nv_inference_request_success", "counter", "Successful inference requests"),
    _triton(
        "nv_inference_request_failure",
        "counter",
        "Failed requests (OTHER, BACKEND, REJECTED, CANCELED)",
        ("model", "version", "reason"),
    ),
    _triton("nv_inference_count", "counter", "Inferences performed (a batch of 8 counts 8)"),
    _triton("nv_inference_exec_count", "counter", "Batches the model ran"),
    _triton("nv_inference_request_duration_us", "counter", "Cumulative end-to-end request time (µs)"),
    _triton("nv_inference_queue_duration_us", "counter", "Cumulative time requests waited in the queue (µs)"),
    _triton("nv_inference_compute_input_duration_us", "counter", "Cumulative input processing time (µs)"),
    _triton("nv_inference_compute_infer_duration_us", "counter", "Cumulative compute time of the model (µs)"),
    _triton("nv_inference_compute_output_duration_us", "counter", "Cumulative output processing time (µs)"),
    _triton("nv_inference_pending_request_count", "gauge", "Requests queued or executing now (queue depth)"),
    _summary("request", "End-to-end request time"),
    _summary("queue", "Queue time"),
    _summary("compute_input", "Input processing time"),
    _summary("compute_infer", "Model compute time"),
    _summary("compute_output", "Output processing time"),
    _triton("nv_pinned_memory_pool_total_bytes", "gauge", "Pinned memory pool size", ()),
    _triton("nv_pinned_memory_pool_used_bytes", "gauge", "Pinned memory in use", ()),
    _triton("nv_cpu_utilization", "gauge", "The host's CPU utilisation (0-1)", ()),
    _triton("nv_cpu_memory_total_bytes", "gauge", "The host's memory", ()),
    _triton("nv_cpu_memory_used_bytes", "gauge", "The host's memory in use", ()),
    _triton("nv_gpu_utilization", "gauge", "GPU utilisation (0-1)", ("gpu_uuid",), "gpu"),
    _triton("nv_gpu_memory_total_bytes", "gauge", "GPU memory", ("gpu_uuid",), "gpu"),
    _triton("nv_gpu_memory_used_bytes", "gauge", "GPU memory in use", ("gpu_uuid",), "gpu"),
    _triton("nv_gpu_power_usage", "gauge", "GPU power draw (W)", ("gpu_uuid",), "gpu"),
    _triton("nv_gpu_power_limit", "gauge", "GPU power limit (W)", ("gpu_uuid",), "gpu"),
    _triton("nv_energy_consumption", "counter", "GPU energy used since start (J)", ("gpu_uuid",), "gpu"),
    _triton(
        "nv_trt_llm_kv_cache_block_metrics",
        "gauge",
        "TensorRT-LLM's KV-cache blocks (max, free, used, ...)",
        ("model", "version", "kv_cache_block_type"),
        "gpu",
    ),
    _triton(
        "nv_trt_llm_request_metrics",
        "gauge",
        "TensorRT-LLM's requests (active, max, scheduled, context, ...)",
        ("model", "version", "request_type"),
        "gpu",
    ),
    Family(
        "tritonfleet_llm_time_to_first_token_seconds",
        "histogram",
        ("model", "version"),
        LLM,
        "A sequence's arrival at tensorrt_llm to its first token",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_inter_token_latency_seconds",
        "histogram",
        ("model", "version"),
        LLM,
        "Time between a sequence's tokens",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_queue_duration_seconds",
        "histogram",
        ("model", "version"),
        LLM,
        "A sequence's arrival to the start of its wave (its queueing)",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_prompt_tokens_total",
        "counter",
        ("model", "version"),
        LLM,
        "Prompt tokens of the sequences submitted (tokens in)",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_generated_tokens_total",
        "counter",
        ("model", "version"),
        LLM,
        "Tokens generated (tokens out)",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_queue_size",
        "gauge",
        ("model", "version"),
        LLM,
        "Sequences waiting for a wave",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_active_sequences",
        "gauge",
        ("model", "version"),
        LLM,
        "Sequences generating in the running waves",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_max_sequences",
        "gauge",
        ("model", "version"),
        LLM,
        "Sequences the running waves may hold at once (max_rows)",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_kv_cache_used_tokens",
        "gauge",
        ("model", "version"),
        LLM,
        "KV-cache positions the running sequences hold (a paged engine: used blocks x tokens per block)",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_kv_cache_capacity_tokens",
        "gauge",
        ("model", "version"),
        LLM,
        "KV-cache positions the engine can hold (a paged engine: its blocks x tokens per block)",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_prefix_cache_hit_tokens_total",
        "counter",
        ("model", "version"),
        LLM,
        "Prompt tokens whose KV blocks the prefix cache had (not computed again)",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_prefix_cache_miss_tokens_total",
        "counter",
        ("model", "version"),
        LLM,
        "Prompt tokens the prefix cache did not have (computed)",
        "cpu",
    ),
    Family(
        "tritonfleet_llm_rows_per_step",
        "histogram",
        ("model", "version"),
        LLM,
        "Live sequences decoded by one step of a wave",
        "cpu",
    ),
    Family(
        "tritonfleet_frontdoor_requests_total",
        "counter",
        ("protocol", "route", "model", "key", "status", "status_class"),
        FRONTDOOR,
        "Requests answered, by route, model (a public model or a /v1 model), key name, status and its class",
    ),
    Family(
        "tritonfleet_frontdoor_request_duration_seconds",
        "histogram",
        ("protocol", "route", "model"),
        FRONTDOOR,
        "A request's last byte to its answer's last (a stream's end)",
    ),
    Family(
        "tritonfleet_frontdoor_rejections_total",
        "counter",
        ("reason",),
        FRONTDOOR,
        "Requests the front door refused, by reason (rate, no_key, invalid, too_large, unavailable, ...)",
    ),
    Family(
        "tritonfleet_frontdoor_recoveries_total",
        "counter",
        ("kind", "model"),
        FRONTDOOR,
        "The supervisor's recoveries: server_restart (tritonserver), model_reload (per model; start at 0)",
    ),
    Family(
        "tritonfleet_frontdoor_tokens_total",
        "counter",
        ("key",),
        FRONTDOOR,
        "Tokens (prompt + completion) used on /v1, by key",
    ),
    Family(
        "tritonfleet_frontdoor_ready",
        "gauge",
        (),
        FRONTDOOR,
        "1 while Triton is up and every public pipeline answered its probe",
    ),
    Family(
        "tritonfleet_batch_results_total",
        "counter",
        ("status",),
        BATCH,
        "Batch lines answered (each written once), by outcome: completed or failed (start at 0)",
    ),
    Family(
        "tritonfleet_batch_tokens_total",
        "counter",
        ("key",),
        BATCH,
        "Tokens of batch lines, by key (apart from /v1's tokens per minute)",
    ),
    Family(
        "tritonfleet_batch_lines",
        "gauge",
        ("state",),
        BATCH,
        "Lines of the batches in flight, by state: pending, leased (running), done",
    ),
    Family("tritonfleet_batch_queue_depth", "gauge", (), BATCH, "Batch lines waiting to run"),
    Family(
        "tritonfleet_batch_in_flight",
        "gauge",
        ("status",),
        BATCH,
        "Batches in flight, by status: validating, in_progress, finalizing, cancelling",
    ),
)


def by_name() -> dict[str, Family]:
    return {f.name: f for f in FAMILIES}


def scraped_name(series: str) -> str:
    """The family a scraped series belongs to: ``x_bucket``/``x_sum``/``x_count`` of a histogram ``x``."""
    families = by_name()
    if series in families:
        return series
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        kind = families[base].kind if base in families else ""
        if base != series and (kind == "histogram" or (kind == "summary" and suffix != "_bucket")):
            return base
    return series


def markdown() -> str:
    """README's table of the metrics."""
    rows = ["| metric | type | labels | from | what |", "| --- | --- | --- | --- | --- |"]
    for f in FAMILIES:
        where = "" if f.target == "both" else f" ({f.target} only)"
        where += f" (with `{f.condition}`)" if f.condition else ""
        labels = ", ".join(f.labels) or "-"
        rows.append(f"| `{f.name}` | {f.kind} | {labels} | {f.source}{where} | {f.help} |")
    return "\n".join(rows)
