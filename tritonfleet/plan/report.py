"""The plan as JSON, a Markdown table, a per-GPU memory bar chart (PNG) and a Kubernetes fragment.

The Kubernetes fragment (``<name>.k8s.json``, format 1) is what the deployment generator reads::

    {
      "format": 1,
      "plan": "1xl4",                  # --model-config-name
      "spec": "1xL4",
      "resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": 1}},
      "nodeAffinity": {                # a node selector term (GPU Feature Discovery's labels)
        "matchExpressions": [
          {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["22854"]},   # MiB, per GPU
          {"key": "nvidia.com/gpu.count", "operator": "Gt", "values": ["0"]}
        ]
      },
      "args": ["--model-config-name=1xl4", ...],  # tritonserver's placement flags
      "env": [{"name": "TRTLLM_ORCHESTRATOR", "value": "1"}],   # only with tensor parallelism
      "modelLoadOrder": [["tensorrt_llm"], ["breast_cancer_xgboost", ...]],  # load stage by stage
      "gpuMemoryBytes": {"0": 6003097600}        # planned use per GPU id
    }

``nvidia.com/gpu.memory`` is each GPU's memory in MiB; the term asks for at least the usable memory the
plan assumed on its smallest GPU, so the KV-cache fraction holds. JSON is YAML, for tools that want YAML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tritonfleet.plan.gpus import GIB, MIB, USABLE_FRACTION
from tritonfleet.plan.memory import CUDA_CONTEXT_SOURCE, Amount
from tritonfleet.plan.pack import EXEC_SLOTS, RATE_RESOURCE, Plan

FORMAT = 1
ON_PAPER = (
    "No GPU ran this plan: every number is an estimate from the artifacts and configs, with its source. "
    "Checked only on a GPU: the CUDA context size, TensorRT's device memory per plan, TensorRT-LLM's "
    "activation memory and the KV-cache pool it allocates with these parameters."
)


def _amount(a: Amount) -> dict[str, Any]:
    return {"label": a.label, "bytes": a.bytes, "source": a.source}


def to_json(plan: Plan) -> dict[str, Any]:
    demands = {d.model: d for d in plan.demands}
    models = {}
    for p in plan.placements:
        d = demands[p.model]
        models[p.model] = {
            "role": p.role,
            "latency_critical": d.latency_critical,
            "tp": d.tp,
            "groups": [{"gpu": g.gpu, "count": g.count, "rate_limited": g.rate_limited} for g in p.groups],
            "rate_limiter_priority": p.priority,
            "instances_source": p.instances_source,
            "parameters": dict(p.parameters),
            "dynamic_batching": {
                "preferred_batch_size": list(p.preferred_batch_size) if p.preferred_batch_size else None,
                "max_queue_delay_microseconds": p.max_queue_delay_microseconds,
            },
            "notes": list(p.notes),
            "memory": {
                "shared": [_amount(a) for a in d.shared],
                "per_instance": [_amount(a) for a in d.per_instance],
            },
        }
    return {
        "format": FORMAT,
        "name": plan.name,
        "spec": plan.spec,
        "gpus": [
            {
                "index": g.index,
                "gpu": g.gpu.describe(),
                "gpu_source": g.gpu.source,
                "memory_bytes": g.gpu.memory_bytes,
                "usable_bytes": g.gpu.usable_bytes,
                "used_bytes": g.used,
                "free_bytes": g.free,
                "rate_limiter": {"resource": RATE_RESOURCE, "count": g.exec_slots} if g.exec_slots else None,
                "base": [_amount(a) for a in g.base],
                "models": [
                    {
                        "model": s.model,
                        "instances": s.instances,
                        "rank": s.rank,
                        "bytes": s.bytes,
                        "parts": [_amount(a) for a in s.parts],
                    }
                    for s in g.slots
                ],
            }
            for g in plan.gpus
        ],
        "models": models,
        "llm": [
            {
                "model": lp.model,
                "gpus": list(lp.gpus),
                "max_tokens_in_paged_kv_cache": lp.kv_tokens,
                "kv_cache_bytes": lp.kv_bytes,
                "free_bytes_at_load": lp.free_at_load,
                "kv_cache_free_gpu_mem_fraction": lp.fraction,
                "tokens_the_fraction_alone_gives": lp.tokens_from_fraction,
                # The same budget for TensorRT-LLM's LLM API (KvCacheConfig), for the llmapi Triton model.
                "llm_api_kv_cache_config": {
                    "max_tokens": lp.kv_tokens,
                    "free_gpu_memory_fraction": float(lp.fraction),
                    "max_gpu_total_bytes": lp.kv_bytes,
                },
                "shape_source": demands[lp.model].llm.shape.source if demands[lp.model].llm else None,
                "limits_source": demands[lp.model].llm.limits.source if demands[lp.model].llm else None,
            }
            for lp in plan.llm
        ],
        "load_order": [list(stage) for stage in plan.load_order],
        "tritonserver_args": list(plan.server_args),
        "env": dict(plan.env),
        "assumptions": [
            f"a plan fills at most {USABLE_FRACTION:.0%} of each GPU's data-sheet memory",
            f"CUDA context: {CUDA_CONTEXT_SOURCE}",
            f"rate limiter where more than {EXEC_SLOTS} Triton-scheduled instances share a GPU",
            ON_PAPER,
        ],
    }


def kubernetes(plan: Plan) -> dict[str, Any]:
    n = len(plan.gpus)
    smallest = min(g.gpu.usable_bytes for g in plan.gpus) // MIB
    return {
        "format": FORMAT,
        "plan": plan.name,
        "spec": plan.spec,
        "resources": {"requests": {"nvidia.com/gpu": n}, "limits": {"nvidia.com/gpu": n}},
        "nodeAffinity": {
            "matchExpressions": [
                {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": [str(smallest - 1)]},
                {"key": "nvidia.com/gpu.count", "operator": "Gt", "values": [str(n - 1)]},
            ]
        },
        "args": list(plan.server_args),
        "env": [{"name": k, "value": v} for k, v in plan.env],
        "modelLoadOrder": [list(stage) for stage in plan.load_order],
        "gpuMemoryBytes": {str(g.index): g.used for g in plan.gpus},
    }


def markdown(plan: Plan) -> str:
    gib = lambda b: f"{b / GIB:.2f}"  # noqa: E731
    lines = [f"# Plan `{plan.name}`: {plan.spec}", "", ON_PAPER, ""]
    lines += ["| GPU | model | instances | GiB | what |", "| --- | --- | --- | --- | --- |"]
    for g in plan.gpus:
        label = f"{g.index}: {g.gpu.name}"
        for a in g.base:
            lines.append(f"| {label} | (tritonserver) | | {gib(a.bytes)} | {a.label} |")
            label = ""
        for s in g.slots:
            rank = f" rank {s.rank}" if s.rank is not None else ""
            what = ", ".join(f"{a.label} {gib(a.bytes)}" for a in s.parts)
            lines.append(f"| | {s.model}{rank} | {s.instances} | {gib(s.bytes)} | {what} |")
        limiter = f"; rate limiter: {g.exec_slots} x {RATE_RESOURCE}" if g.exec_slots else ""
        lines.append(
            f"| | **used / usable** | | **{gib(g.used)} / {gib(g.gpu.usable_bytes)}** | "
            f"{gib(g.free)} GiB free of {gib(g.gpu.memory_bytes)}{limiter} |"
        )
    for lp in plan.llm:
        lines += [
            "",
            f"**{lp.model}** on GPU {', '.join(map(str, lp.gpus))}: KV cache {lp.kv_tokens:,} tokens "
            f"({gib(lp.kv_bytes)} GiB); at its load {gib(lp.free_at_load)} GiB are free, so "
            f"`kv_cache_free_gpu_mem_fraction` {lp.fraction} (alone: {lp.tokens_from_fraction:,} tokens) and "
            f"`max_tokens_in_paged_kv_cache` {lp.kv_tokens}: TensorRT-LLM takes the smaller, the cap.",
        ]
    lines += ["", "Load order: " + " then ".join(", ".join(stage) for stage in plan.load_order), ""]
    lines += ["tritonserver: `" + " ".join(plan.server_args) + "`", ""]
    lines += [
        "## Where the numbers come from",
        "",
        "| model | what | GiB | source |",
        "| --- | --- | --- | --- |",
    ]
    for d in plan.demands:
        for a in d.shared + d.per_instance:
            scope = " (per instance)" if a in d.per_instance else ""
            lines.append(f"| {d.model} | {a.label}{scope} | {gib(a.bytes)} | {a.source} |")
    for a in plan.gpus[0].base:
        lines.append(f"| tritonserver | {a.label} (per GPU) | {gib(a.bytes)} | {a.source} |")
    notes = [(p.model, n) for p in plan.placements for n in p.notes]
    if notes:
        lines += ["", *(f"- {m}: {n}" for m, n in notes)]
    return "\n".join(lines) + "\n"


def chart(plan: Plan, path: Path) -> None:
    """A horizontal bar per GPU: tritonserver, each model, free up to the usable line, the headroom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({s.model for g in plan.gpus for s in g.slots})
    colors = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.6 * len(plan.gpus)))
    labelled: set[str] = set()
    for row, g in enumerate(plan.gpus):
        left = 0.0
        segments = [("tritonserver", sum(a.bytes for a in g.base), "0.6")]
        segments += [(s.model, s.bytes, colors[s.model]) for s in g.slots]
        for label, size, color in segments:
            ax.barh(row, size / GIB, left=left, color=color, label=None if label in labelled else label)
            labelled.add(label)
            left += size / GIB
        ax.barh(row, g.free / GIB, left=left, color="white", edgecolor="0.7")
        headroom = (g.gpu.memory_bytes - g.gpu.usable_bytes) / GIB
        label = None if "headroom" in labelled else "headroom"
        ax.barh(
            row,
            headroom,
            left=g.gpu.usable_bytes / GIB,
            color="0.9",
            hatch="//",
            edgecolor="0.7",
            label=label,
        )
        labelled.add("headroom")
    ax.set_yticks(range(len(plan.gpus)), [f"GPU {g.index}: {g.gpu.name}" for g in plan.gpus])
    ax.invert_yaxis()
    ax.set_xlabel("GiB")
    ax.set_title(f"fleet plan {plan.name} ({plan.spec}): planned GPU memory")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(plan: Plan, output: Path) -> list[Path]:
    """``<output>/<name>.{json,md,png}`` and ``<name>.k8s.json``."""
    output.mkdir(parents=True, exist_ok=True)
    paths = {ext: output / f"{plan.name}.{ext}" for ext in ("json", "md", "png", "k8s.json")}
    paths["json"].write_text(json.dumps(to_json(plan), indent=2, sort_keys=True) + "\n")
    paths["k8s.json"].write_text(json.dumps(kubernetes(plan), indent=2, sort_keys=True) + "\n")
    paths["md"].write_text(markdown(plan))
    chart(plan, paths["png"])
    return list(paths.values())
