"""Property tests of the packer over the five named inventories and random ones, with the real fleet and
with random fleets: no GPU over capacity, every model placed, tensor-parallel ranks on distinct GPUs, the
KV-cache cap binding, the rate limiter exactly where instances contend, deterministic output; and a refusal
names a real shortfall and an inventory that does hold the fleet."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.plan.conftest import NAMED
from tritonfleet.plan import gpus, memory, pack, report, spec
from tritonfleet.plan.memory import Amount, Demand, KvCache, Llm, LlmLimits, LlmShape

MIB, GIB = 1 << 20, 1 << 30
SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

table_gpu = st.sampled_from(sorted(gpus.TABLE.values(), key=lambda g: g.name))
raw_gpu = st.integers(min_value=1, max_value=160).map(lambda n: spec.gpu(f"{n}GiB"))
inventory = st.lists(st.one_of(table_gpu, raw_gpu), min_size=1, max_size=8).map(tuple)


def check(plan: pack.Plan, demands: list[Demand]) -> None:
    """The invariants of any plan."""
    n = len(plan.gpus)
    for g in plan.gpus:
        assert g.used <= g.gpu.usable_bytes, f"GPU {g.index} over capacity"
        for slot in g.slots:
            d = next(d for d in demands if d.model == slot.model)
            assert slot.bytes == d.bytes_on(g.gpu.name, slot.instances)
        scheduled = sum(
            s.instances
            for s in g.slots
            if plan.placement(s.model).role in (memory.ROLE_TENSORRT, memory.ROLE_GPU)
        )
        assert (g.exec_slots is not None) == (scheduled > pack.EXEC_SLOTS)
    assert {p.model for p in plan.placements} == {d.model for d in demands}
    for d in demands:
        p = plan.placement(d.model)
        hosts = [g.index for g in plan.gpus if any(s.model == d.model for s in g.slots)]
        if not d.on_gpu:
            assert hosts == [] and p.groups == ()
        elif d.role == memory.ROLE_LLM:
            assert len(hosts) == d.tp == len(set(hosts)), "tensor-parallel ranks on distinct GPUs"
            (lp,) = [lp for lp in plan.llm if lp.model == d.model]
            assert lp.tokens_from_fraction >= lp.kv_tokens == d.llm.kv.tokens  # the cap binds
            assert lp.kv_bytes <= lp.free_at_load and 0 < float(lp.fraction) <= 1
            assert plan.load_order[0] == tuple(sorted(m.model for m in plan.llm))
        else:
            assert [g.gpu for g in p.groups] == hosts and all(g.count >= 1 for g in p.groups)
            replicas = min(pack.REPLICAS, n) if d.latency_critical else 1
            assert len(hosts) == replicas or (len(hosts) == 1 and p.notes), "spread for redundancy"
            limited = {g.gpu for g in p.groups if g.rate_limited}
            assert limited == {i for i in hosts if plan.gpus[i].exec_slots}
            assert (p.priority is not None) == bool(limited)


def check_refusal(exc: pack.DoesNotFit, demands: list[Demand]) -> None:
    assert exc.shortfalls
    for s in exc.shortfalls:
        assert s.needs > s.room and f"short by {(s.needs - max(s.room, 0)) / GIB:.2f} GiB" in str(exc)
    if exc.suggestion:
        check(pack.pack(demands, spec.parse(exc.suggestion), "suggested", suggest=False), demands)


def plan_json(plan: pack.Plan) -> str:
    return json.dumps(report.to_json(plan), sort_keys=True) + json.dumps(report.kubernetes(plan))


def test_the_fleet_on_the_named_inventories(fleet) -> None:
    for name in NAMED:
        gpus_ = spec.parse(name)
        plan = pack.pack(fleet, gpus_, "named")
        check(plan, fleet)
        assert plan_json(plan) == plan_json(pack.pack(fleet, gpus_, "named"))
    one = pack.pack(fleet, spec.parse("1xL4"), "l4")
    assert [s.model for s in one.gpus[0].slots] == ["efficientnet_lite0", "minilm_l6", "tensorrt_llm"]
    two = pack.pack(fleet, spec.parse("2xA100-40GB"), "a100")
    for model in ("efficientnet_lite0", "minilm_l6"):
        assert [g.gpu for g in two.placement(model).groups] == [0, 1]
    eight = pack.pack(fleet, spec.parse("8xH100-80GB"), "h100")
    assert [s.model for s in eight.gpus[0].slots] == ["tensorrt_llm"]  # the others avoid the LLM's GPU


@SETTINGS
@given(inventory=inventory)
def test_the_fleet_on_random_inventories(fleet, fleet_tp3, inventory) -> None:
    for demands in (fleet, fleet_tp3):
        try:
            plan = pack.pack(demands, inventory, "random")
        except pack.DoesNotFit as exc:
            check_refusal(exc, demands)
            continue
        check(plan, demands)
        assert plan_json(plan) == plan_json(pack.pack(demands, inventory, "random"))


def synthetic_llm(name: str, weights: int, per_token: int, blocks: int, tp: int) -> Demand:
    kv = KvCache(per_token, 64, blocks)
    shape = LlmShape(2, 4, 4, 8, 32, 64, 100, None, "synthetic")
    limits = LlmLimits("float16", "float16", 8, 64, 64, 1, 64, tp, "synthetic")
    shared = (Amount("engine", weights, "synthetic"), Amount("KV cache", kv.bytes, "synthetic"))
    return Demand(
        name, memory.ROLE_LLM, shared, (), 1, "synthetic", True, tp, "float16", Llm(shape, limits, kv)
    )


@st.composite
def fleets(draw) -> list[Demand]:
    demands = []
    for i in range(draw(st.integers(0, 2))):
        demands.append(
            synthetic_llm(
                f"llm{i}", draw(st.integers(1, 40)) * GIB // 4, draw(st.integers(1, 64)) * 1024,
                draw(st.integers(1, 4096)), draw(st.sampled_from([1, 1, 2, 3, 4])),
            )
        )  # fmt: skip
    for i in range(draw(st.integers(1, 8))):
        demands.append(
            Demand(
                f"m{i}", memory.ROLE_TENSORRT,
                (Amount("weights", draw(st.integers(1, 8000)) * MIB, "synthetic"),),
                (Amount("activations", draw(st.integers(1, 4000)) * MIB, "synthetic"),),
                draw(st.integers(1, 4)), "synthetic", draw(st.booleans()),
            )
        )  # fmt: skip
    demands.append(Demand("cpu_model", memory.ROLE_CPU, instances=2, instances_source="synthetic"))
    return demands


@SETTINGS
@given(demands=fleets(), inventory=inventory)
def test_random_fleets_on_random_inventories(demands, inventory) -> None:
    try:
        plan = pack.pack(demands, inventory, "random")
    except pack.DoesNotFit as exc:
        event("refused")
        check_refusal(exc, demands)
        return
    event("fits" + (", rate limited" if any(g.exec_slots for g in plan.gpus) else ""))
    event(f"tp {max((d.tp for d in demands), default=1)}")
    check(plan, demands)
    assert plan_json(plan) == plan_json(pack.pack(list(reversed(demands)), inventory, "random"))


def test_a_refusal_names_the_model_the_shortfall_and_the_smallest_inventory(fleet) -> None:
    try:
        pack.pack(fleet, spec.parse("1x2GiB"), "tiny")
    except pack.DoesNotFit as exc:
        text = str(exc)
        assert exc.shortfalls[0].model == "tensorrt_llm"
        assert "tensorrt_llm needs 3.20 GiB" in text and "short by" in text
        assert exc.suggestion == "1xT4"  # 16 GiB: the least memory in the table
    else:
        raise AssertionError("a 2 GiB GPU cannot hold a 2.8 GiB KV cache")
