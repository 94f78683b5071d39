"""Planned configs: a model's GPU config with only its placement fields changed.

``planned_config`` takes the model's GPU config (Triton's ``ModelConfig``, as ``tritonfleet.repository``
parses it, or as issue 14's interface declarations render it) and returns a copy where only these change:
``instance_group`` (KIND_GPU models: one group per GPU, ``gpus`` and ``count`` from the plan, a
``rate_limiter`` where the plan has one), ``dynamic_batching``'s tuned ``preferred_batch_size`` and
``max_queue_delay_microseconds``, and the LLM's placement parameters (``gpu_device_ids``,
``kv_cache_free_gpu_mem_fraction``, ``max_tokens_in_paged_kv_cache``). Inputs, outputs, ``max_batch_size``,
the transaction policy and every other parameter stay as they are, so clients see the same interface
(``fleet validate`` checks each ``configs/*.pbtxt`` against ``config.pbtxt``).

Beside the LLM's planned config goes ``configs/<plan>.llmapi.yaml``: the same KV-cache budget and tensor
parallelism as the LLM-API model's ``model.yaml`` (:func:`llmapi_options`), which ``fleet render --llm-path
llmapi --plan NAME`` installs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet.pipelines.llm import llmapi
from tritonfleet.plan.pack import RATE_RESOURCE, Placement, Plan
from tritonfleet.repository import Repository

LLMAPI_SUFFIX = ".llmapi.yaml"  # configs/<plan>.llmapi.yaml: the LLM-API model.yaml for that plan

# The fields planned_config may change; tests check that nothing else differs.
PLACEMENT_FIELDS = ("instance_group", "dynamic_batching", "parameters")
PLACEMENT_PARAMETERS = ("gpu_device_ids", "kv_cache_free_gpu_mem_fraction", "max_tokens_in_paged_kv_cache")


def planned_config(config: mc.ModelConfig, placement: Placement) -> mc.ModelConfig:
    """``config`` placed as ``placement`` says."""
    out = mc.ModelConfig()
    out.CopyFrom(config)
    if placement.groups:
        template = next(iter(config.instance_group), mc.ModelInstanceGroup())
        del out.instance_group[:]
        for group in placement.groups:
            planned = out.instance_group.add()
            planned.CopyFrom(template)
            planned.ClearField("name")
            planned.kind = mc.ModelInstanceGroup.KIND_GPU
            planned.count = group.count
            del planned.gpus[:]
            planned.gpus.append(group.gpu)
            planned.ClearField("rate_limiter")
            if group.rate_limited:
                resource = planned.rate_limiter.resources.add()
                resource.name, resource.count = RATE_RESOURCE, 1
                planned.rate_limiter.priority = placement.priority or 1
    if placement.preferred_batch_size is not None:
        del out.dynamic_batching.preferred_batch_size[:]
        out.dynamic_batching.preferred_batch_size.extend(placement.preferred_batch_size)
    if placement.max_queue_delay_microseconds is not None:
        out.dynamic_batching.max_queue_delay_microseconds = placement.max_queue_delay_microseconds
    for key, value in placement.parameters:
        if key not in PLACEMENT_PARAMETERS:
            raise ValueError(f"{config.name}: {key!r} is not a placement parameter")
        out.parameters[key].string_value = value
    return out


def header(plan: Plan) -> str:
    return (
        f"# Planned by `fleet plan --gpus {plan.spec} --name {plan.name}` for tritonserver "
        f"--model-config-name={plan.name}.\n"
        "# config.pbtxt with only the placement fields changed (instance groups, rate limiter, batcher "
        "settings,\n# KV-cache parameters); the interface is config.pbtxt's. Regenerate, do not edit.\n"
    )


def llmapi_options(plan: Plan) -> dict[str, dict[str, Any]]:
    """Each planned LLM's LLM-API ``model.yaml`` (:func:`tritonfleet.pipelines.llm.llmapi.model_yaml`): the
    plan's KV-cache budget as ``kv_cache_config`` (``max_tokens``, ``max_gpu_total_bytes`` and the
    ``free_gpu_memory_fraction`` of what is free when it loads) and its tensor-parallel size. The LLM API
    takes its GPUs in order from the first visible one: an LLM planned elsewhere than on GPUs 0..tp-1 gets
    none (``fleet render --llm-path llmapi --plan`` then refuses that plan)."""
    demands = {d.model: d for d in plan.demands}
    out = {}
    for lp in plan.llm:
        tp = demands[lp.model].tp if lp.model in demands else len(lp.gpus)
        if sorted(lp.gpus) != list(range(len(lp.gpus))):
            continue
        out[lp.model] = llmapi.model_yaml(
            kv_tokens=lp.kv_tokens, kv_fraction=float(lp.fraction), kv_bytes=lp.kv_bytes, tp=tp
        )
    return out


def write_configs(repository: Repository, plan: Plan) -> list[Path]:
    """``<model>/configs/<plan.name>.pbtxt`` for every model, and the LLM's ``<plan.name>.llmapi.yaml``; the
    paths written."""
    written = []
    for model, options in llmapi_options(plan).items():
        path = repository.root / model / "configs" / f"{plan.name}{LLMAPI_SUFFIX}"
        path.parent.mkdir(exist_ok=True)
        head = (
            f"# Planned by `fleet plan --gpus {plan.spec} --name {plan.name}`: the LLM-API model.yaml of\n"
            f"# {model} for this plan (`fleet render --llm-path llmapi --plan {plan.name}`).\n"
            "# Regenerate, do not edit.\n"
        )
        path.write_text(head + yaml.safe_dump(options, sort_keys=False))
        written.append(path)
    for name, config in repository.configs("gpu"):
        path = repository.root / name / "configs" / f"{plan.name}.pbtxt"
        path.parent.mkdir(exist_ok=True)
        text = text_format.MessageToString(planned_config(config, plan.placement(name)))
        path.write_text(header(plan) + text)
        written.append(path)
    return written
