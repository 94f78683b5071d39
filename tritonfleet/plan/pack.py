"""Pack the fleet's models onto an inventory of GPUs, by memory, with priorities.

1. Every GPU first holds tritonserver's own CUDA context and CUDA memory pool (Triton opens both on every
   GPU it sees).
2. The LLM goes first, onto the GPU(s) with the most free memory (tp > 1: that many distinct GPUs), with its
   engine, activations and its whole KV-cache budget. It also loads first (the plan's load order), so when
   TensorRT-LLM measures the free memory to size its pool, only tritonserver and the LLM itself are on the
   GPU: ``kv_cache_free_gpu_mem_fraction`` is the budget over that free memory (rounded up), and
   ``max_tokens_in_paged_kv_cache`` the budget in tokens. TensorRT-LLM takes the smaller of the two, so the
   cap binds and the pool is the budget; loaded in another order it can only be smaller, never more.
3. The other GPU models, latency-critical ones first, then the largest first: a latency-critical model is
   placed on two GPUs when there are several (redundancy), preferring GPUs without the LLM, then the most
   free memory; instance counts per GPU come from ``fleet tune``'s records for that GPU (or, given a
   target rate, as many as it needs at the recorded throughput), else the config.
4. Where more than ``EXEC_SLOTS`` Triton-scheduled instances share a GPU, Triton's rate limiter gives each
   one a ``gpu_exec`` resource of that GPU, which has ``EXEC_SLOTS`` of them, and latency-critical models
   priority 1 (twice the scheduling chances of priority 2): two executions at once let one's copies overlap
   the other's compute (Triton's optimization guide, "Model Instances"), more only queue on the GPU.

A model that does not fit is reported with what it needs and the most any GPU had left (``DoesNotFit``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from tritonfleet.plan.gpus import GIB, TABLE, Gpu
from tritonfleet.plan.memory import (
    CUDA_CONTEXT,
    CUDA_CONTEXT_SOURCE,
    CUDA_POOL,
    CUDA_POOL_SOURCE,
    ROLE_CPU,
    ROLE_ENSEMBLE,
    ROLE_LLM,
    Amount,
    Demand,
)
from tritonfleet.plan.spec import canonical

EXEC_SLOTS = 2
RATE_RESOURCE = "gpu_exec"
REPLICAS = 2  # GPUs a latency-critical model runs on when there are several
MAX_SUGGESTED_GPUS = 8


@dataclass(frozen=True)
class Slot:
    """One model's share of one GPU."""

    model: str
    instances: int
    parts: tuple[Amount, ...]
    rank: int | None = None  # the LLM's tensor-parallel rank

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)


@dataclass(frozen=True)
class GpuPlan:
    index: int
    gpu: Gpu
    base: tuple[Amount, ...]
    slots: tuple[Slot, ...]
    exec_slots: int | None  # the rate limiter's gpu_exec count here; None: no limiter on this GPU

    @property
    def used(self) -> int:
        return sum(a.bytes for a in self.base) + sum(s.bytes for s in self.slots)

    @property
    def free(self) -> int:
        return self.gpu.usable_bytes - self.used


@dataclass(frozen=True)
class Group:
    """An instance group of a planned config: ``count`` instances on GPU ``gpu``."""

    gpu: int
    count: int
    rate_limited: bool = False


@dataclass(frozen=True)
class Placement:
    """Where a model runs and the placement fields of its planned config."""

    model: str
    role: str
    groups: tuple[Group, ...] = ()  # KIND_GPU models
    priority: int | None = None  # rate limiter priority of its rate-limited groups
    preferred_batch_size: tuple[int, ...] | None = None
    max_queue_delay_microseconds: int | None = None
    parameters: tuple[tuple[str, str], ...] = ()  # the LLM's placement parameters
    instances_source: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LlmPlan:
    model: str
    gpus: tuple[int, ...]
    kv_tokens: int
    kv_bytes: int
    free_at_load: int  # bytes free on its fullest rank's GPU when TensorRT-LLM sizes the pool
    fraction: str  # kv_cache_free_gpu_mem_fraction, as written
    tokens_from_fraction: int  # what the fraction alone would give (>= kv_tokens: the cap binds)


@dataclass(frozen=True)
class Plan:
    name: str
    spec: str
    gpus: tuple[GpuPlan, ...]
    placements: tuple[Placement, ...]
    llm: tuple[LlmPlan, ...]
    load_order: tuple[tuple[str, ...], ...]
    server_args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    demands: tuple[Demand, ...] = field(repr=False, default=())

    def placement(self, model: str) -> Placement:
        return next(p for p in self.placements if p.model == model)


@dataclass(frozen=True)
class Shortfall:
    model: str
    needs: int  # bytes on one GPU
    room: int  # the most a suitable GPU had left
    detail: str

    def __str__(self) -> str:
        return (
            f"{self.model} needs {self.needs / GIB:.2f} GiB on one GPU{self.detail}; the roomiest GPU "
            f"had {max(self.room, 0) / GIB:.2f} GiB left: short by "
            f"{(self.needs - max(self.room, 0)) / GIB:.2f} GiB"
        )


class DoesNotFit(ValueError):
    """The inventory cannot hold the fleet: what does not fit, by how much, and what would."""

    def __init__(self, spec: str, shortfalls: Sequence[Shortfall], suggestion: str | None) -> None:
        self.spec, self.shortfalls, self.suggestion = spec, tuple(shortfalls), suggestion
        lines = [f"the fleet does not fit on {spec}:", *(f"  {s}" for s in shortfalls)]
        if suggestion:
            lines.append(f"smallest inventory from the GPU table that holds it: {suggestion}")
        else:
            lines.append(
                f"no inventory of up to {MAX_SUGGESTED_GPUS} GPUs of one kind from the table holds it"
            )
        super().__init__("\n".join(lines))


def base_amounts() -> tuple[Amount, ...]:
    return (
        Amount("tritonserver CUDA context", CUDA_CONTEXT, CUDA_CONTEXT_SOURCE),
        Amount("tritonserver CUDA memory pool", CUDA_POOL, CUDA_POOL_SOURCE),
    )


def pack(
    demands: Sequence[Demand],
    gpus: Sequence[Gpu],
    name: str,
    rps: Mapping[str, float] | None = None,
    suggest: bool = True,
) -> Plan:
    """The plan for ``demands`` on ``gpus`` (GPU i = ``gpus[i]``); raises ``DoesNotFit``."""
    rps = dict(rps or {})
    spec = canonical(tuple(gpus))
    demands = sorted(demands, key=lambda d: d.model)
    base = base_amounts()
    slots: list[list[Slot]] = [[] for _ in gpus]
    free = [g.usable_bytes - sum(a.bytes for a in base) for g in gpus]
    shortfalls: list[Shortfall] = []
    placements: dict[str, Placement] = {}
    llm_gpus: set[int] = set()

    def suitable(d: Demand, i: int) -> bool:
        return gpus[i].supports(d.precision) is not False

    if min(free) < 0:
        i = free.index(min(free))
        needs = sum(a.bytes for a in base)
        shortfalls.append(
            Shortfall("tritonserver", needs, gpus[i].usable_bytes, f" (GPU {i}, {gpus[i].name})")
        )

    for d in (d for d in demands if d.role == ROLE_LLM):
        need = d.bytes_on("", 1)
        fits = sorted((i for i in range(len(gpus)) if suitable(d, i)), key=lambda i: (-free[i], i))
        chosen = [i for i in fits if free[i] >= need][: d.tp]
        if len(chosen) < d.tp:
            room = free[fits[d.tp - 1]] if len(fits) >= d.tp else 0
            where = f" on each of {d.tp} distinct GPUs (tp {d.tp})" if d.tp > 1 else ""
            if len(fits) < d.tp:
                where += f"; the inventory has only {len(fits)} GPU(s) that run {d.precision}"
            shortfalls.append(Shortfall(d.model, need, room, where + _parts(d.shared)))
            continue
        for rank, i in enumerate(chosen):
            slots[i].append(Slot(d.model, 1, d.shared, rank if d.tp > 1 else None))
            free[i] -= need
            llm_gpus.add(i)
        placements[d.model] = _llm_placement(d, chosen)

    others = [d for d in demands if d.on_gpu and d.role != ROLE_LLM]
    others.sort(key=lambda d: (not d.latency_critical, -d.bytes_on("", d.instances), d.model))
    for d in others:
        wanted = min(REPLICAS, len(gpus)) if d.latency_critical else 1
        chosen: list[tuple[int, int]] = []
        for k in range(wanted, 0, -1):
            fits = []
            for i in range(len(gpus)):
                count, _ = instances_for(d, gpus[i], k, rps.get(d.model))
                if suitable(d, i) and free[i] >= d.bytes_on(gpus[i].name, count):
                    fits.append((i, count))
            fits.sort(key=lambda ic: (ic[0] in llm_gpus, -free[ic[0]], ic[0]))
            if len(fits) >= k:
                chosen = fits[:k]
                break
        if not chosen:
            roomiest = max(range(len(gpus)), key=lambda i: (free[i], -i))
            count, _ = instances_for(d, gpus[roomiest], 1, rps.get(d.model))
            needs = d.bytes_on(gpus[roomiest].name, count)
            shortfalls.append(Shortfall(d.model, needs, free[roomiest], f" ({count} instance(s))"))
            continue
        notes = []
        if len(chosen) < wanted:
            notes.append(f"on one GPU only: no other GPU had room for a second replica ({wanted} wanted)")
        groups, sources = [], set()
        for i, count in sorted(chosen):
            parts = d.shared + tuple(_times(a, count) for a in d.instance_amounts(gpus[i].name))
            slots[i].append(Slot(d.model, count, parts))
            free[i] -= d.bytes_on(gpus[i].name, count)
            groups.append(Group(i, count))
            sources.add(instances_for(d, gpus[i], len(chosen), rps.get(d.model))[1])
        record = d.record(gpus[chosen[0][0]].name)
        placements[d.model] = Placement(
            d.model, d.role, tuple(groups),
            preferred_batch_size=record.preferred_batch_size if record else None,
            max_queue_delay_microseconds=record.max_queue_delay_microseconds if record else None,
            instances_source="; ".join(sorted(sources)), notes=tuple(notes),
        )  # fmt: skip

    if shortfalls:
        suggestion = smallest_inventory(demands, rps) if suggest else None
        raise DoesNotFit(spec, shortfalls, suggestion)

    for d in demands:
        if not d.on_gpu:
            source = d.instances_source if d.role != ROLE_ENSEMBLE else "ensemble"
            placements[d.model] = Placement(d.model, d.role, instances_source=source)

    gpu_plans = []
    limited_models: set[str] = set()
    for i, g in enumerate(gpus):
        scheduled = [s for s in slots[i] if placements[s.model].role not in (ROLE_LLM, ROLE_CPU)]
        limit = EXEC_SLOTS if sum(s.instances for s in scheduled) > EXEC_SLOTS else None
        if limit:
            limited_models |= {s.model for s in scheduled}
        gpu_plans.append(GpuPlan(i, g, base, tuple(sorted(slots[i], key=lambda s: s.model)), limit))
    by_model = {d.model: d for d in demands}
    for model in limited_models:
        p = placements[model]
        groups = tuple(Group(gr.gpu, gr.count, gpu_plans[gr.gpu].exec_slots is not None) for gr in p.groups)
        priority = 1 if by_model[model].latency_critical else 2
        placements[model] = replace(p, groups=groups, priority=priority)

    llm_plans = tuple(
        _llm_plan(by_model[m], gpu_plans) for m in sorted(placements) if placements[m].role == ROLE_LLM
    )
    for lp in llm_plans:
        p = placements[lp.model]
        params = dict(p.parameters)
        params["kv_cache_free_gpu_mem_fraction"] = lp.fraction
        params["max_tokens_in_paged_kv_cache"] = str(lp.kv_tokens)
        placements[lp.model] = replace(p, parameters=tuple(sorted(params.items())))

    first = tuple(lp.model for lp in llm_plans)
    rest = tuple(sorted(m for m in placements if m not in first))
    load_order = tuple(stage for stage in (first, rest) if stage)
    args = [f"--model-config-name={name}"]
    args += [f"--cuda-memory-pool-byte-size={i}:{CUDA_POOL}" for i in range(len(gpus))]
    if any(g.exec_slots for g in gpu_plans):
        args.append("--rate-limit=execution_count")
        args += [
            f"--rate-limit-resource={RATE_RESOURCE}:{g.exec_slots}:{g.index}"
            for g in gpu_plans
            if g.exec_slots
        ]
    env = (("TRTLLM_ORCHESTRATOR", "1"),) if any(by_model[lp.model].tp > 1 for lp in llm_plans) else ()
    return Plan(
        name=name, spec=spec, gpus=tuple(gpu_plans),
        placements=tuple(placements[m] for m in sorted(placements)), llm=llm_plans, load_order=load_order,
        server_args=tuple(args), env=env, demands=tuple(demands),
    )  # fmt: skip


def instances_for(d: Demand, gpu: Gpu, replicas: int, rps: float | None) -> tuple[int, str]:
    """Instances of ``d`` on one of ``replicas`` GPUs of kind ``gpu``, and where the number comes from."""
    record = d.record(gpu.name)
    if rps is not None:
        if record is None:
            raise ValueError(f"--rps {d.model}: no throughput recorded for {gpu.name} (fleet tune writes it)")
        count = max(1, math.ceil(rps / replicas / record.throughput_per_instance))
        return count, (
            f"{rps:g} inferences/s over {replicas} GPU(s) at {record.throughput_per_instance:g}/s per "
            f"instance ({record.describe()})"
        )
    if record is not None:
        return record.instances, f"tuned on {record.target}: {record.describe()}"
    return d.instances, d.instances_source


def smallest_inventory(demands: Sequence[Demand], rps: Mapping[str, float] | None = None) -> str | None:
    """The inventory of one GPU kind from the table with the least memory in all that holds the fleet."""
    candidates = sorted(
        ((n, g) for g in TABLE.values() for n in range(1, MAX_SUGGESTED_GPUS + 1)),
        key=lambda c: (c[0] * c[1].memory_bytes, c[0], c[1].name),
    )
    for n, g in candidates:
        try:
            pack(demands, [g] * n, "probe", rps, suggest=False)
        except (DoesNotFit, ValueError):
            continue
        return f"{n}x{g.name}"
    return None


def _llm_placement(d: Demand, gpus: list[int]) -> Placement:
    return Placement(
        d.model, d.role, parameters=(("gpu_device_ids", ",".join(map(str, gpus))),),
        instances_source=d.instances_source,
        notes=(f"tensor parallel over GPUs {', '.join(map(str, gpus))}",) if d.tp > 1 else (),
    )  # fmt: skip


def _llm_plan(d: Demand, gpus: list[GpuPlan]) -> LlmPlan:
    """The KV-cache settings for the LLM as placed: the fraction over the free memory at its load."""
    assert d.llm is not None
    kv = d.llm.kv
    ranks = [g for g in gpus if any(s.model == d.model for s in g.slots)]
    before = [a for a in d.shared if a.label != "KV cache"]
    free_at_load = min(
        g.gpu.usable_bytes - sum(a.bytes for a in g.base) - sum(a.bytes for a in before) for g in ranks
    )
    fraction = math.ceil(kv.bytes / free_at_load * 1000) / 1000
    return LlmPlan(
        model=d.model, gpus=tuple(g.index for g in ranks), kv_tokens=kv.tokens, kv_bytes=kv.bytes,
        free_at_load=free_at_load, fraction=f"{fraction:.3f}",
        tokens_from_fraction=kv.tokens_for(int(fraction * free_at_load)),
    )  # fmt: skip


def _times(amount: Amount, count: int) -> Amount:
    if count == 1:
        return amount
    return Amount(f"{count} x {amount.label}", amount.bytes * count, amount.source)


def _parts(amounts: Sequence[Amount]) -> str:
    return " (" + " + ".join(f"{a.label} {a.bytes / GIB:.2f}" for a in amounts) + " GiB)" if amounts else ""
