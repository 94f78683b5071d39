"""The front door's rules without a server: validation against the repository's real configs, keys,
limits, cleaned messages, secure-by-default."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from tritonclient.grpc import service_pb2 as pb

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.errors import ClientError, NotFound, RateLimited, retry_after
from tritonfleet.frontdoor.access import AccessControl, ServerState
from tritonfleet.frontdoor.grpc_proxy import decode_infer
from tritonfleet.frontdoor.http import Request, Router
from tritonfleet.frontdoor.keys import Bucket, KeyFile, KeysError, KeyStore, Limiter
from tritonfleet.frontdoor.policy import (
    OPERATIONS,
    Call,
    Models,
    PublicModels,
    Who,
    grpc_operation,
    http_operation,
)
from tritonfleet.frontdoor.service import is_local
from tritonfleet.frontdoor.validation import Limits, check_infer, clean_message, json_infer
from tritonfleet.pipelines.loading import models_to_load
from tritonfleet.tools.fuzz import valid_case
from tritonfleet.tools.fuzz.grpc import grpc_request
from tritonfleet.tools.fuzz.http import http_cases


@pytest.fixture(scope="module")
def catalog():
    return PublicModels.from_repository(REPOSITORY, models_to_load(REPOSITORY))


def check(catalog, model: str, request: dict | bytes, header: int | None = None) -> None:
    body = request if isinstance(request, bytes) else json.dumps(request).encode()
    _, inputs, outputs = json_infer(body, header)
    check_infer(catalog.model(model), inputs, outputs, catalog.limits)


def image(shape: list[int], data: list | None = None, **extra: object) -> dict:
    return {
        "inputs": [{"name": "IMAGE", "shape": shape, "datatype": "BYTES", "data": data or ["x"], **extra}]
    }


def test_public_models_come_from_the_declarations(catalog) -> None:
    from tritonfleet import pipelines

    assert set(catalog.models) == set(pipelines.public_models())
    assert {"image_classifier", "ensemble", "tensorrt_llm_bls", "tensorrt_llm"} <= set(catalog.models)
    assert not {"image_preprocess", "efficientnet_lite0", "preprocessing", "postprocessing"} & set(
        catalog.models
    )
    spec = catalog.model("image_classifier")
    assert spec.inputs["IMAGE"].datatype == "BYTES" and spec.max_batch_size == 32 and spec.versions == {"1"}
    assert catalog.model("ensemble").decoupled and not catalog.model("tensorrt_llm_bls").decoupled


def test_a_valid_request_passes(catalog) -> None:
    check(catalog, "image_classifier", image([1, 1]))
    check(catalog, "image_classifier", image([2, 1], ["a", "b"]))
    check(catalog, "image_classifier", image([2, 1], [["a"], ["b"]]))  # nested, row-major


@pytest.mark.parametrize(
    ("request_", "status", "message"),
    [
        (image([100000000, 1]), 400, "batch size 100000000: it must be 1 to 32"),
        (image([0, 1], []), 400, "batch size 0"),
        (image([1, -1]), 400, "negative"),
        (image([1]), 400, "expected 2 dims"),
        (image([1, 2]), 400, "expected [batch, 1]"),
        (image([2, 1]), 400, "(2 elements) but 1 values"),
        (image([1, 1], [1]), 400, "not a valid BYTES value"),
        (
            {"inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "FP32", "data": [1.0]}]},
            400,
            "datatype BYTES",
        ),
        (
            {"inputs": [{"name": "X", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]},
            400,
            "has no input 'X'",
        ),
        ({"inputs": []}, 400, "no inputs"),
        ({**image([1, 1]), "outputs": [{"name": "nope"}]}, 400, "has no output 'nope'"),
        ({**image([1, 1]), "outputs": [{"name": "PROBABILITIES"}] * 2}, 400, "asked for twice"),
        (
            {**image([1, 1]), "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": 1001}}]},
            400,
            "0 to 1000",
        ),
        (image([1, 1], None, parameters={"shared_memory_region": "r"}), 400, "shared memory"),
        ({**image([1, 1]), "extra": 1}, 400, "unknown field 'extra'"),
        (b"{bad", 400, "not valid JSON"),
        (
            b'{"inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES", "data": [NaN]}]}',
            400,
            "JSON",
        ),
        (b"[" * 100_000 + b"]" * 100_000, 400, "not valid JSON"),
    ],
)
def test_malformed_requests_are_refused_with_a_clear_message(catalog, request_, status, message) -> None:
    with pytest.raises(ClientError) as err:
        check(catalog, "image_classifier", request_)
    assert err.value.status == status and message in err.value.message, err.value.message


def test_llm_inputs_types_ranges_and_required(catalog) -> None:
    def llm(**inputs: tuple[str, list]) -> dict:
        return {
            "inputs": [
                {"name": n, "shape": [1, len(v)], "datatype": dt, "data": v} for n, (dt, v) in inputs.items()
            ]
        }

    check(catalog, "tensorrt_llm_bls", llm(text_input=("BYTES", ["hi"]), max_tokens=("INT32", [4])))
    with pytest.raises(ClientError, match="missing required input"):
        check(catalog, "tensorrt_llm_bls", llm(text_input=("BYTES", ["hi"])))
    with pytest.raises(ClientError, match="not a valid INT32 value"):
        check(catalog, "tensorrt_llm_bls", llm(text_input=("BYTES", ["hi"]), max_tokens=("INT32", [2**31])))
    with pytest.raises(ClientError, match="exceed") as err:
        huge = {"inputs": [{"name": "input_ids", "shape": [1, 2**40], "datatype": "INT32", "data": [1]}]}
        check(catalog, "tensorrt_llm", huge)
    assert err.value.status == 413


def test_binary_extension_sizes_and_bytes_prefixes(catalog) -> None:
    element = struct.pack("<I", 3) + b"abc"
    head = json.dumps(image([1, 1], None, parameters={"binary_data_size": len(element)})).replace(
        ', "data": ["x"]', ""
    )
    header = head.encode()
    check(catalog, "image_classifier", header + element, len(header))
    for bad in (struct.pack("<I", 4) + b"abc", element + b"\x00", struct.pack("<I", 2**31) + b"x"):
        size_head = head.replace(f'"binary_data_size": {len(element)}', f'"binary_data_size": {len(bad)}')
        with pytest.raises(ClientError, match="BYTES data"):
            check(catalog, "image_classifier", size_head.encode() + bad, len(size_head))
    with pytest.raises(ClientError, match="beyond the body"):
        check(catalog, "image_classifier", header + element[:-1], len(header))
    with pytest.raises(ClientError, match="does not fit"):
        check(catalog, "image_classifier", header + element, len(header) + 100)


def test_grpc_requests_are_decoded_and_checked_by_the_same_rules(catalog) -> None:
    spec = catalog.model("image_classifier")
    good = grpc_request(valid_case(spec))
    check_infer(spec, *decode_infer(good), catalog.limits)
    bad = pb.ModelInferRequest()
    bad.CopyFrom(good)
    bad.raw_input_contents[0] += b"\x00"
    with pytest.raises(ClientError, match="BYTES data"):
        check_infer(spec, *decode_infer(bad), catalog.limits)
    bad.CopyFrom(good)
    bad.inputs[0].parameters["shared_memory_region"].string_param = "r"
    with pytest.raises(ClientError, match="shared memory"):
        decode_infer(bad)
    bad.CopyFrom(good)
    del bad.raw_input_contents[:]
    bad.inputs[0].contents.fp32_contents.append(1.0)
    with pytest.raises(ClientError, match="bytes_contents"):
        decode_infer(bad)


def test_every_fuzz_case_is_refused(catalog) -> None:
    """The generator's requests are all client mistakes (checked here without a server; 404 for models)."""
    import random

    specs = list(catalog.models.values())
    cases = http_cases(specs, random.Random(3))
    for _ in range(400):
        case = next(cases)
        if case.method != "POST" or not case.path.endswith("/infer") or case.headers.get("Content-Encoding"):
            continue
        parts = case.path.split("/")
        model, version = parts[3], parts[5] if parts[4] == "versions" else ""
        header = case.headers.get("Inference-Header-Content-Length")
        with pytest.raises(ClientError):
            length = int(header) if header is not None and header.lstrip("-").isdigit() else None
            if header is not None and length is None:
                raise ClientError("not a number")
            _, inputs, outputs = json_infer(case.body, length)
            check_infer(catalog.model(model, version), inputs, outputs, catalog.limits)


def test_clean_message_hides_paths_and_regions() -> None:
    message = (
        "in ensemble 'image_classifier', Stub process 'image_preprocess_0_0' failed: "
        "/work/x/model_repository/image_preprocess/1/model.py line 3, "
        "region triton_python_backend_shm_region_ab28f9da-5759-4c8f-8503-e69ec9421436"
    )
    cleaned = clean_message(message)
    assert "/work" not in cleaned and "shm_region" not in cleaned and "model.py" not in cleaned
    assert "image_classifier" in cleaned and "image_preprocess_0_0" in cleaned  # steps are still named


def test_keys_file_add_list_revoke(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "keys.json")
    secret = keys.add("alice", rpm=10)
    assert secret.startswith("tf-") and len(secret) > 40
    assert secret not in (tmp_path / "keys.json").read_text()  # only its hash is stored
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(KeysError, match="exists"):
        keys.add("alice")
    store = KeyStore(tmp_path / "keys.json", recheck_s=0)
    assert store.enabled and store.lookup(secret).name == "alice" and store.lookup("tf-other") is None
    keys.revoke("alice")
    assert store.lookup(secret) is None and not store.enabled  # re-read without a restart
    with pytest.raises(KeysError, match="no key"):
        keys.revoke("alice")


def test_gate_answers_401_403_429(tmp_path: Path, catalog) -> None:
    keys = KeyFile(tmp_path / "keys.json")
    user, admin, slow = keys.add("user"), keys.add("ops", admin=True), keys.add("slow", rpm=2)
    access = AccessControl(catalog, KeyStore(tmp_path / "keys.json", recheck_s=0))
    assert access.authorize(f"Bearer {user}").name == "user"
    for auth, admin_api, status in [
        (None, False, 401),
        ("Bearer tf-nope", False, 401),
        (f"Basic {user}", False, 401),
        (f"Bearer {user}", True, 403),
    ]:
        with pytest.raises(ClientError) as err:
            access.authorize(auth, admin=admin_api)
        assert err.value.status == status
    assert access.authorize(f"Bearer {admin}", admin=True).admin
    access.authorize(f"Bearer {slow}")
    access.authorize(f"Bearer {slow}")
    with pytest.raises(ClientError) as err:
        access.authorize(f"Bearer {slow}")
    assert err.value.status == 429 and int(err.value.retry_after) >= 1


def test_no_keys_means_open_locally_and_admin_closed(tmp_path: Path, catalog) -> None:
    access = AccessControl(catalog, KeyStore(tmp_path / "none.json"))
    assert access.authorize(None) is None
    # the openai client always sends a key: with no keys configured any is let through, as none is
    assert access.authorize("Bearer none") is None
    with pytest.raises(ClientError) as err:
        access.authorize(None, admin=True)
    assert err.value.status == 403
    public = AccessControl(catalog, KeyStore(tmp_path / "none.json"), require_keys=True)
    with pytest.raises(ClientError):
        public.authorize(None)
    with pytest.raises(ClientError):
        public.authorize("Bearer none")
    assert is_local("127.0.0.1") and is_local("localhost") and is_local("::1") and not is_local("0.0.0.0")


def test_token_bucket_waits_and_tokens_per_minute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    now = [1000.0]
    monkeypatch.setattr("tritonfleet.frontdoor.keys.time.monotonic", lambda: now[0])
    bucket = Bucket(60)  # one a second
    assert [bucket.take() for _ in range(60)] == [0.0] * 60
    assert bucket.take() == pytest.approx(1.0)
    now[0] += 0.5
    assert bucket.take() == pytest.approx(0.5)
    keys = KeyFile(tmp_path / "k.json")
    keys.add("t", tpm=600)  # ten tokens a second
    key = keys.load()[0]
    limiter = Limiter()
    assert limiter.admit(key, tokens=True) == 0
    limiter.used_tokens(key, 700)  # one request used more than the minute's budget
    wait = limiter.admit(key, tokens=True)
    assert wait == pytest.approx(10.0, abs=0.01) and retry_after(wait) == "11"
    now[0] += 11
    assert limiter.admit(key, tokens=True) == 0


def test_limits_are_configurable() -> None:
    assert Limits().max_body_bytes == 64 << 20


def test_one_policy_for_both_protocols() -> None:
    """Every method of Triton's gRPC service and every KServe path the front door serves is one operation
    of the policy table, and the same operation has the same rule over either protocol."""
    methods = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name
    by_grpc = {name: grpc_operation(name) for name in methods}
    assert None not in by_grpc.values() and set(by_grpc.values()) <= set(OPERATIONS)
    assert {by_grpc[m] for m in methods if "SharedMemory" in m} == {"shared_memory"}
    paths = {
        "/v2/health/ready": "health",
        "/v2": "server_metadata",
        "/v2/models/image_classifier": "model_metadata",
        "/v2/models/image_classifier/ready": "model_ready",
        "/v2/models/image_classifier/versions/1/config": "model_config",
        "/v2/models/image_classifier/stats": "model_stats",
        "/v2/models/stats": "all_stats",
        "/v2/models/image_classifier/infer": "infer",
        "/v2/repository/index": "repository_index",
        "/v2/repository/models/image_classifier/load": "model_load",
        "/v2/repository/models/image_classifier/unload": "model_unload",
        "/v2/trace/setting": "trace",
        "/v2/logging": "logging",
        "/v2/systemsharedmemory/region/r/register": "shared_memory",
        "/v2/cudasharedmemory/status": "shared_memory",
    }
    assert {path: http_operation(path).operation for path in paths} == paths
    assert http_operation("/v2/models/image_classifier/explain") is None
    assert set(by_grpc.values()) - {"shared_memory"} <= {http_operation(p).operation for p in paths}
    assert OPERATIONS["shared_memory"].who is Who.NOBODY and OPERATIONS["health"].who is Who.ANYONE
    admin = {op for op, rule in OPERATIONS.items() if rule.who is Who.ADMIN}
    assert admin == {"model_trace", "trace", "logging", "repository_index", "model_load", "model_unload"}
    assert OPERATIONS["infer"].models is Models.PUBLIC
    assert OPERATIONS["model_config"].models is Models.READABLE


def test_the_batch_api_is_a_v1_operation_apart_from_the_tokens_budget(tmp_path: Path, catalog) -> None:
    """/v1/files and /v1/batches go to the /v1 app with their query strings (the list's pagination) and a
    key over its tokens per minute may still call them; the other /v1 calls wait for its budget."""
    paths = {
        "/v1/files": "batch",
        "/v1/files/file-1/content": "batch",
        "/v1/batches": "batch",
        "/v1/batches/batch_1/cancel": "batch",
        "/v1/filesystem": "openai",
        "/v1/chat/completions": "openai",
    }
    assert {path: http_operation(path).operation for path in paths} == paths
    assert OPERATIONS["openai"].tokens and not OPERATIONS["batch"].tokens
    keys = KeyFile(tmp_path / "keys.json")
    secret = keys.add("t", tpm=100, batch_lines=5, batch_file_mb=2, batches=3)
    store = KeyStore(tmp_path / "keys.json", recheck_s=0)
    key = store.lookup(secret)
    assert (key.batch_lines, key.batch_file_mb, key.batches) == (5, 2, 3)
    router = Router(AccessControl(catalog, store, state=ServerState(up=True, ready=True)), openai=True)
    auth = {"authorization": f"Bearer {secret}"}
    listed = router.route(Request("GET", "/v1/batches", auth, b"", True, query="limit=2&after=batch_1"))
    assert (listed.upstream, listed.path, listed.route) == (
        "openai",
        "/v1/batches?limit=2&after=batch_1",
        "batch",
    )
    router.access.limiter.used_tokens(key, 1000)  # ten minutes of its budget
    for _ in range(3):
        assert router.route(Request("POST", "/v1/batches", auth, b"{}", True)).route == "batch"
    with pytest.raises(RateLimited):
        router.route(Request("POST", "/v1/chat/completions", auth, b"{}", True))


def test_inner_steps_are_readable_only(catalog) -> None:
    assert "image_preprocess" in catalog.steps
    assert catalog.named(Call("model_config", "image_preprocess"), "GET") is None  # perf_analyzer reads it
    assert catalog.named(Call("model_config", "image_preprocess")) is None  # over gRPC
    for call, method in [
        (Call("infer", "image_preprocess"), "POST"),
        (Call("model_config", "image_preprocess"), "POST"),
        (Call("model_trace", "image_preprocess"), "GET"),
        (Call("model_config", "nope"), "GET"),
    ]:
        with pytest.raises(NotFound):
            catalog.named(call, method)
    assert catalog.named(Call("infer", "image_classifier"), "POST").name == "image_classifier"
