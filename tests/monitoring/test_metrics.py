"""The metrics the rules read, without a server: the front door's (status classes, recoveries at zero,
durations by model, a rate-limited key counted as itself) and the CPU LLM's (tokens in, queueing, KV cache
and sequence slots) on the real engine through the fake pb_utils."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.python_models import PythonModel, load, row
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.errors import RateLimited, Unauthenticated
from tritonfleet.frontdoor.access import AccessControl, key_of
from tritonfleet.frontdoor.keys import KeyStore
from tritonfleet.frontdoor.metrics import Metrics, status_class
from tritonfleet.frontdoor.policy import PublicModels

ENGINE = REPOSITORY / "tensorrt_llm/1/cpu_engine/engine.json"


def samples(metrics: Metrics) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.text().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), (404, "4xx"), (429, "4xx"), (503, "5xx"), ("OK", "2xx"), ("INVALID_ARGUMENT", "4xx"),
     ("RESOURCE_EXHAUSTED", "4xx"), ("CANCELLED", "4xx"), ("UNAVAILABLE", "5xx"), ("INTERNAL", "5xx"),
     ("UNKNOWN", "5xx"), ("DEADLINE_EXCEEDED", "5xx")],
)  # fmt: skip
def test_status_classes_of_http_statuses_and_grpc_codes(status: int | str, expected: str) -> None:
    assert status_class(status) == expected


def test_requests_durations_and_recoveries_as_prometheus_reads_them() -> None:
    m = Metrics()
    m.expect(["wine_sklearn", "image_preprocess"])
    m.request("http", "infer", "wine_sklearn", "alice", 200)
    m.request("grpc", "ModelInfer", "wine_sklearn", "alice", "UNAVAILABLE")
    m.observe("http", "infer", "wine_sklearn", 0.3)
    got = samples(m)
    requests = "tritonfleet_frontdoor_requests_total"
    http = {"protocol": "http", "route": "infer", "status": "200", "status_class": "2xx"}
    grpc = {"protocol": "grpc", "route": "ModelInfer", "status": "UNAVAILABLE", "status_class": "5xx"}
    for labels in (http, grpc):
        assert got[(requests, frozenset({**labels, "model": "wine_sklearn", "key": "alice"}.items()))] == 1
    bucket = "tritonfleet_frontdoor_request_duration_seconds_bucket"
    labels = {"protocol": "http", "route": "infer", "model": "wine_sklearn"}
    assert got[(bucket, frozenset({**labels, "le": "0.25"}.items()))] == 0
    assert got[(bucket, frozenset({**labels, "le": "0.5"}.items()))] == 1
    assert got[(bucket, frozenset({**labels, "le": "120.0"}.items()))] == 1
    recoveries = {(dict(k[1])["kind"], dict(k[1])["model"]): v for k, v in got.items()
                  if k[0] == "tritonfleet_frontdoor_recoveries_total"}  # fmt: skip
    assert recoveries == {("server_restart", "tritonserver"): 0, ("model_reload", "wine_sklearn"): 0,
                          ("model_reload", "image_preprocess"): 0}  # fmt: skip
    assert not any(name.endswith("_created") for name, _ in got)


def test_a_key_over_its_rate_is_named_on_its_refusal(tmp_path) -> None:
    from tritonfleet.frontdoor.keys import KeyFile

    secret = KeyFile(tmp_path / "keys.json").add("alice", rpm=1)
    access = AccessControl(PublicModels({}), KeyStore(tmp_path / "keys.json"))
    access.authorize(f"Bearer {secret}")
    with pytest.raises(RateLimited) as refused:
        for _ in range(5):
            access.authorize(f"Bearer {secret}")
    assert refused.value.status == 429 and key_of(refused.value, "-") == "alice"
    with pytest.raises(Unauthenticated) as unknown:
        access.authorize("Bearer tf-not-a-key")
    assert key_of(unknown.value, "-") == "-"


@pytest.fixture(scope="module")
def llm() -> Iterator[PythonModel]:
    if not ENGINE.is_file():
        pytest.skip(f"no CPU engine at {ENGINE} (fleet build llm)")
    model = load("tensorrt_llm")
    yield model
    model.finalize()


def test_llm_counts_tokens_in_and_out_queueing_and_its_kv_cache(llm: PythonModel) -> None:
    model = llm.instance
    kv_set: list[float] = []
    set_kv = model.kv.set
    model.kv.set = lambda value: (kv_set.append(value), set_kv(value))
    prompt = [1, 4093, 198, 36218, 15876, 30, 2, 198, 1, 520, 9531, 198]
    before_in, before_out = model.prompt_tokens.value(), model.tokens.value()
    waited = len(model.waited.observations)
    answer = llm.infer(row(input_ids=prompt, input_lengths=len(prompt), request_output_len=6, streaming=True))
    generated = sum(int(r["sequence_length"].sum()) for r in answer.stream)
    assert model.prompt_tokens.value() - before_in == len(prompt)
    assert model.tokens.value() - before_out == generated > 0
    assert len(model.waited.observations) == waited + 1 and model.waited.observations[-1] >= 0
    # One 32-token KV block held while it ran (12 prompt + 6 tokens), none after.
    assert kv_set[0] == 32 and kv_set[-1] == 0
    assert model.kv_capacity.value() == model.scheduler.capacity_tokens > 0 and model.slots.value() == 32
