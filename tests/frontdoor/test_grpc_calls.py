"""The gRPC rules without a server (tritonfleet/frontdoor/grpc_calls.py, which both gRPC transports use):
what each call is answered, refused with or forwarded as, Triton's errors as the client sees them, streams'
messages, the metrics; and which transport serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import service_pb2 as pb

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.frontdoor import grpc_native
from tritonfleet.frontdoor.access import AccessControl
from tritonfleet.frontdoor.grpc_calls import SERVICE, GrpcCalls, Pending, Refusal
from tritonfleet.frontdoor.keys import KeyFile, KeyStore
from tritonfleet.frontdoor.policy import PublicModels
from tritonfleet.frontdoor.service import grpc_transport
from tritonfleet.repository import Repository
from tritonfleet.tools.fuzz import valid_case
from tritonfleet.tools.fuzz.grpc import grpc_request


@pytest.fixture(scope="module")
def catalog() -> PublicModels:
    from tritonfleet import pipelines

    models = Repository(REPOSITORY).closure(pipelines.expand(list(pipelines.registry())))
    return PublicModels.from_repository(REPOSITORY, models)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, str]:
    file = KeyFile(tmp_path / "keys.json")
    return {
        "path": str(file.path),
        "user": f"Bearer {file.add('user')}",
        "admin": f"Bearer {file.add('ops', admin=True)}",
        "slow": f"Bearer {file.add('slow', rpm=1)}",
    }


@pytest.fixture
def calls(catalog: PublicModels, keys: dict[str, str]) -> GrpcCalls:
    access = AccessControl(catalog, KeyStore(Path(keys["path"]), recheck_s=0))
    access.state.up = access.state.ready = True
    return GrpcCalls(access, internal=("/srv/secret-repository",))


def path(method: str) -> str:
    return f"/{SERVICE}/{method}"


def image_request(catalog: PublicModels, **change: str) -> bytes:
    request = grpc_request(valid_case(catalog.model("image_classifier")))
    for name, value in change.items():
        setattr(request, name, value)
    return request.SerializeToString()


def series(calls: GrpcCalls, name: str, **labels: str) -> float:
    """The sum of the gRPC samples ``name`` whose labels include ``labels`` (whatever their others)."""
    wanted = {"protocol": "grpc", **labels}
    return sum(
        sample.value
        for family in calls.access.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and wanted.items() <= sample.labels.items()
    )


def test_inference_is_checked_then_forwarded(calls: GrpcCalls, catalog: PublicModels, keys: dict) -> None:
    step = calls.unary(path("ModelInfer"), image_request(catalog), keys["user"])
    assert isinstance(step, Pending) and (step.method, step.model, step.key) == (
        "ModelInfer",
        "image_classifier",
        "user",
    )
    assert calls.answered(step, "OK", "", b"answer") is None  # passed on as it came
    labels = {"route": "ModelInfer", "model": "image_classifier", "key": "user", "status": "OK"}
    assert series(calls, "tritonfleet_frontdoor_requests_total", **labels) == 1


@pytest.mark.parametrize(
    ("method", "body", "key", "code", "message"),
    [
        ("ModelInfer", b"\xff\xff", "user", "INVALID_ARGUMENT", "not a valid ModelInferRequest"),
        ("ModelInfer", None, None, "UNAUTHENTICATED", "API key is required"),
        ("ModelInfer", None, "Bearer tf-nope", "UNAUTHENTICATED", "unknown or revoked"),
        ("RepositoryIndex", b"", "user", "PERMISSION_DENIED", "admin key"),
        ("SystemSharedMemoryRegister", b"", "admin", "PERMISSION_DENIED", "shared memory"),
        ("CudaSharedMemoryStatus", b"", "admin", "PERMISSION_DENIED", "shared memory"),
        ("Frobnicate", b"", "user", "UNIMPLEMENTED", "Frobnicate is not served"),
        ("ModelConfig", pb.ModelConfigRequest(name="nope").SerializeToString(), "user", "NOT_FOUND", "nope"),
        ("ModelInfer", "image_preprocess", "user", "NOT_FOUND", "unknown model 'image_preprocess'"),
        ("ModelInfer", "version", "user", "NOT_FOUND", "no version '42'"),
        (
            "RepositoryModelLoad",
            pb.RepositoryModelLoadRequest(
                model_name="x", parameters={"file:1/model.py": pb.ModelRepositoryParameter(bytes_param=b"x")}
            ).SerializeToString(),
            "admin",
            "INVALID_ARGUMENT",
            "cannot be uploaded",
        ),
        (
            "LogSettings",
            pb.LogSettingsRequest(
                settings={"log_file": pb.LogSettingsRequest.SettingValue(string_param="/tmp/x")}
            ).SerializeToString(),
            "admin",
            "INVALID_ARGUMENT",
            "cannot be set",
        ),
        ("ModelConfig", b"\xff\xff", "user", "INVALID_ARGUMENT", "not a valid ModelConfig"),
    ],
)
def test_refusals(calls, catalog, keys, method, body, key, code, message) -> None:
    if body is None:
        body = image_request(catalog)
    elif body == "image_preprocess":
        body = image_request(catalog, model_name="image_preprocess")
    elif body == "version":
        body = image_request(catalog, model_version="42")
    step = calls.unary(path(method), body, keys.get(key, key))
    assert isinstance(step, Refusal) and step.code == code and message in step.message, step


def test_health_needs_no_key_and_other_services_are_not_found(calls: GrpcCalls) -> None:
    def answer(method: str) -> bytes:
        step = calls.unary(path(method), b"", None)
        assert isinstance(step, bytes), step
        return step

    assert pb.ServerReadyResponse.FromString(answer("ServerReady")).ready
    calls.access.state.ready = False
    assert not pb.ServerReadyResponse.FromString(answer("ServerReady")).ready
    assert pb.ServerLiveResponse.FromString(answer("ServerLive")).live
    other = calls.unary("/grpc.health.v1.Health/Check", b"", None)
    assert other == Refusal("UNIMPLEMENTED", "Method not found!")


def test_rate_limit_is_resource_exhausted_with_retry_after(calls, catalog, keys) -> None:
    assert isinstance(calls.unary(path("ModelInfer"), image_request(catalog), keys["slow"]), Pending)
    refused = calls.unary(path("ModelInfer"), image_request(catalog), keys["slow"])
    assert isinstance(refused, Refusal) and refused.code == "RESOURCE_EXHAUSTED"
    assert int(refused.retry_after) >= 1
    assert calls.access.metrics.registry.get_sample_value(
        "tritonfleet_frontdoor_rejections_total", {"reason": "rate"}
    )


def test_every_models_statistics_are_cut_to_the_served_ones(calls, keys) -> None:
    step = calls.unary(path("ModelStatistics"), b"", keys["user"])
    assert isinstance(step, Pending) and step.cut_stats
    answer = pb.ModelStatisticsResponse(
        model_stats=[pb.ModelStatistics(name=n) for n in ("image_classifier", "image_preprocess", "secret")]
    ).SerializeToString()
    cut = calls.answered(step, "OK", "", answer)
    assert isinstance(cut, bytes)
    assert [m.name for m in pb.ModelStatisticsResponse.FromString(cut).model_stats] == [
        "image_classifier",
        "image_preprocess",
    ]


def test_tritons_errors_are_cleaned_and_read_once(calls, catalog, keys) -> None:
    dead: list[str] = []
    calls.access.on_dead_stub.append(dead.append)

    def upstream(code: str, details: str) -> Refusal:
        step = calls.unary(path("ModelInfer"), image_request(catalog), keys["user"])
        assert isinstance(step, Pending)
        outcome = calls.answered(step, code, details, None)
        assert isinstance(outcome, Refusal)
        return outcome

    failed = upstream("INVALID_ARGUMENT", "bad image in /srv/secret-repository/image_preprocess/1/model.py")
    assert failed.code == "INVALID_ARGUMENT" and "bad image" in failed.message
    assert "secret" not in failed.message
    died = upstream("INTERNAL", "Stub process 'image_preprocess_0_0' is not healthy.")
    assert (died.code, died.retry_after) == ("UNAVAILABLE", "5") and "restarting" in died.message
    assert dead == ["image_classifier"]
    loading = upstream("UNAVAILABLE", "Request for unknown model: 'x' has no available versions")
    assert loading.code == "UNAVAILABLE" and loading.retry_after == "2"
    step = calls.unary(path("ModelInfer"), image_request(catalog), keys["user"])
    assert isinstance(step, Pending)
    calls.access.state.up = False  # meanwhile the supervisor saw tritonserver die
    down = calls.answered(step, "UNAVAILABLE", "failed to connect to all addresses", None)
    assert isinstance(down, Refusal) and down.code == "UNAVAILABLE" and "not available" in down.message
    assert down.retry_after
    refused = calls.unary(path("ModelInfer"), image_request(catalog), keys["user"])  # the next one
    assert isinstance(refused, Refusal) and refused.code == "UNAVAILABLE"


def test_stream_messages_are_checked_one_by_one(calls, catalog, keys) -> None:
    assert calls.stream_open(None) == Refusal(
        "UNAUTHENTICATED", "an API key is required: send 'Authorization: Bearer <key>'"
    )
    stream = calls.stream_open(keys["user"])
    assert not isinstance(stream, Refusal)
    assert calls.stream_message(stream, image_request(catalog)) is None  # forwarded
    bad = pb.ModelInferRequest.FromString(image_request(catalog, model_name="nope", id="r7"))
    refused = calls.stream_message(stream, bad.SerializeToString())
    assert refused is not None
    response = pb.ModelStreamInferResponse.FromString(refused)
    assert response.infer_response.id == "r7" and "unknown model 'nope'" in response.error_message
    good = pb.ModelStreamInferResponse(infer_response=pb.ModelInferResponse(id="a")).SerializeToString()
    assert calls.stream_answer(good) == good  # untouched
    error = pb.ModelStreamInferResponse(
        error_message="failed at /srv/secret-repository/x/1/model.py", infer_response=pb.ModelInferResponse()
    ).SerializeToString()
    cleaned = pb.ModelStreamInferResponse.FromString(calls.stream_answer(error)).error_message
    assert "secret" not in cleaned and cleaned.startswith("failed at")
    assert calls.stream_closed(stream, "CANCELLED", "") is None  # an upstream cancel ends it normally
    labels = {"route": "ModelStreamInfer", "model": "image_classifier", "key": "user", "status": "OK"}
    assert series(calls, "tritonfleet_frontdoor_requests_total", **labels) == 1
    failed = calls.stream_closed(stream, "INTERNAL", "boom in /srv/secret-repository")
    assert failed is not None and failed.code == "INTERNAL" and "secret" not in failed.message


def test_answers_reported_later_count_their_own_latency(calls, catalog, keys) -> None:
    """The C++ transport reports calls answered OK in batches (finished): each counted once, with the
    latency it had when its answer came."""
    steps = [calls.unary(path("ModelInfer"), image_request(catalog), keys["user"]) for _ in range(3)]
    assert all(isinstance(s, Pending) for s in steps)
    calls.finished([(s, s.started + 0.25) for s in steps])  # type: ignore[union-attr]
    labels = {"route": "ModelInfer", "model": "image_classifier", "key": "user", "status": "OK"}
    assert series(calls, "tritonfleet_frontdoor_requests_total", **labels) == 3
    duration = {"route": "ModelInfer", "model": "image_classifier"}
    assert series(calls, "tritonfleet_frontdoor_request_duration_seconds_count", **duration) == 3
    total = series(calls, "tritonfleet_frontdoor_request_duration_seconds_sum", **duration)
    assert total == pytest.approx(0.75)


def test_the_native_transport_is_built_and_chosen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """scripts/setup.sh builds the C++ transport; auto picks it. Where it is not built, auto falls back to
    grpc.aio and asking for native says why."""
    assert grpc_native.available() is None, grpc_native.available()
    assert grpc_transport("auto") == "native" and grpc_transport("aio") == "aio"
    monkeypatch.setenv("TRITONFLEET_CACHE", str(tmp_path))  # an empty build cache
    grpc_native.load.cache_clear()
    try:
        assert "not built" in (grpc_native.available() or "")
        assert grpc_transport("auto") == "aio"
        with pytest.raises(grpc_native.NativeUnavailable, match="not built"):
            grpc_transport("native")
    finally:
        monkeypatch.undo()
        grpc_native.load.cache_clear()
    with pytest.raises(ValueError, match="one of"):
        grpc_transport("fast")
