"""Both gRPC transports of the front door on one fleet of their own (wine_sklearn and the LLM): the C++
one (the fleet's) and grpc.aio (the fallback, started beside it on the same AccessControl). Every call is
answered alike by both and by the rules (grpc_calls.py), inference and LLM streams as Triton answers them
directly; streams go on after a refused message; a client's cancel stops the generation upstream; keys,
limits and metrics are one budget over HTTP and both transports; malformed requests are refused; a dead
upstream is UNAVAILABLE while the door stays up; many calls at once get their own answers; stopping with
calls in flight ends them."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import serialize_byte_tensor

from tests.conftest import running_fleet
from tests.llm.conftest import inputs, metric, wait_idle
from tritonfleet.clients import FleetClient
from tritonfleet.fleet import Fleet
from tritonfleet.frontdoor.grpc_native import NativeGrpcFrontDoor
from tritonfleet.frontdoor.grpc_proxy import GrpcFrontDoorThread
from tritonfleet.frontdoor.keys import KeyFile
from tritonfleet.frontdoor.validation import Limits
from tritonfleet.server import free_port
from tritonfleet.tools import stress

pytestmark = pytest.mark.server

S = "/inference.GRPCInferenceService/"
TRANSPORTS = ("native", "aio")
BODY_LIMIT = 1 << 20  # a message over it plus 1 MB is refused by gRPC itself
CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
LONG = {"text_input": CHAT.format("Write a very long essay about rivers."), "max_tokens": 1000,
        "min_tokens": 1000, "stream": True}  # fmt: skip


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(
        tmp_path_factory.mktemp("grpc-transports"),
        models=["wine_sklearn", "llm"],
        public=["wine_sklearn", "ensemble", "tensorrt_llm_bls", "tensorrt_llm"],
        limits=Limits(max_body_bytes=BODY_LIMIT, max_tensor_bytes=BODY_LIMIT),
        grpc_transport="native",
        openai_port=None,
    ) as f:
        yield f


@pytest.fixture(scope="module")
def urls(fleet: Fleet) -> Iterator[dict[str, str]]:
    """Each transport's address: the fleet's own (native) and a grpc.aio door on the same AccessControl."""
    assert fleet.door is not None and fleet.door.transport == "native" and fleet.access is not None
    direct = f"127.0.0.1:{fleet.server.grpc_port}"
    aio = GrpcFrontDoorThread(fleet.access, direct, fleet.door.internal)
    port = aio.start()
    yield {"native": fleet.grpc_url, "aio": f"127.0.0.1:{port}", "direct": direct}
    aio.stop()


def wine(rows: int = 1, model: str = "wine_sklearn", datatype: str = "FP32", row: int = 0) -> bytes:
    """A request of ``rows`` copies of scikit-learn's wine sample ``row``."""
    from sklearn.datasets import load_wine

    features = np.repeat(load_wine().data[row : row + 1].astype(np.float32), rows, axis=0)
    request = pb.ModelInferRequest(model_name=model, id="w")
    request.inputs.add(name="FEATURES", datatype=datatype, shape=[rows, 13])
    request.raw_input_contents.append(features.tobytes())
    return request.SerializeToString()


def llm(text: str, tokens: int, rid: str) -> bytes:
    request = pb.ModelInferRequest(model_name="ensemble", id=rid)
    for name, datatype, array in (
        ("text_input", "BYTES", np.array([[text.encode()]], dtype=object)),
        ("max_tokens", "INT32", np.array([[tokens]], np.int32)),
        ("stream", "BOOL", np.array([[True]])),
    ):
        request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
        raw = serialize_byte_tensor(array).item() if datatype == "BYTES" else array.tobytes()
        request.raw_input_contents.append(raw)
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    return request.SerializeToString()


def unary(channel: grpc.Channel, method: str, body: bytes, **kw: object) -> tuple:
    try:
        answer = channel.unary_unary(S + method)(body, timeout=60, **kw)
    except grpc.RpcError as exc:
        trailing = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
        return (exc.code().name, exc.details(), trailing.get("retry-after"))  # type: ignore[attr-defined]
    return ("OK", answer)


def stream(channel: grpc.Channel, messages: list[bytes], **kw: object) -> list[str]:
    """Each response of a ModelStreamInfer stream: its error, or its request id (+ " final")."""
    got = []
    for raw in channel.stream_stream(S + "ModelStreamInfer")(iter(messages), timeout=120, **kw):
        r = pb.ModelStreamInferResponse.FromString(raw)
        final = r.infer_response.parameters["triton_final_response"].bool_param
        got.append(f"error: {r.error_message}" if r.error_message else r.infer_response.id + " final" * final)
    return got


CASES = {
    "infer": ("ModelInfer", wine()),
    "batch 0": ("ModelInfer", wine(0)),
    "datatype": ("ModelInfer", wine(1, datatype="FP64")),
    "inner step": ("ModelInfer", wine(1, model="preprocessing")),
    "unknown model": ("ModelInfer", wine(1, model="nope")),
    "not a request": ("ModelInfer", b"\xff\xff\xff"),
    "over the size limit": ("ModelInfer", wine(60_000)),  # 3 MB
    "step's config": ("ModelConfig", pb.ModelConfigRequest(name="preprocessing").SerializeToString()),
    "step's metadata": ("ModelMetadata", pb.ModelMetadataRequest(name="postprocessing").SerializeToString()),
    "unknown config": ("ModelConfig", pb.ModelConfigRequest(name="nope").SerializeToString()),
    "repository index": ("RepositoryIndex", b""),
    "shared memory": ("SystemSharedMemoryStatus", b""),
    "unknown method": ("Frobnicate", b""),
    "ready": ("ServerReady", b""),
    "live": ("ServerLive", b""),
    "server metadata": ("ServerMetadata", b""),
    "every model's statistics": ("ModelStatistics", b""),
}
EXPECTED = {
    "infer": "OK", "batch 0": "INVALID_ARGUMENT", "datatype": "INVALID_ARGUMENT", "inner step": "NOT_FOUND",
    "unknown model": "NOT_FOUND", "not a request": "INVALID_ARGUMENT",
    "over the size limit": "RESOURCE_EXHAUSTED", "step's config": "OK", "step's metadata": "OK",
    "unknown config": "NOT_FOUND", "repository index": "PERMISSION_DENIED",
    "shared memory": "PERMISSION_DENIED", "unknown method": "UNIMPLEMENTED", "ready": "OK", "live": "OK",
    "server metadata": "OK", "every model's statistics": "OK",
}  # fmt: skip


def served(statistics: bytes) -> set[str]:
    return {m.name for m in pb.ModelStatisticsResponse.FromString(statistics).model_stats}


def test_both_transports_answer_every_call_alike(fleet: Fleet, urls: dict[str, str]) -> None:
    answers = {}
    for transport in TRANSPORTS:
        with grpc.insecure_channel(urls[transport]) as channel:
            answers[transport] = {name: unary(channel, *case) for name, case in CASES.items()}
            with pytest.raises(grpc.RpcError) as other:
                channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=30)
            answers[transport]["other service"] = (other.value.code().name, other.value.details())
    native, aio = answers["native"], answers["aio"]
    assert {name: a[0] for name, a in native.items() if name in EXPECTED} == EXPECTED
    for name in native:
        if name == "over the size limit":  # gRPC's own words, which differ between its versions
            assert native[name][0] == aio[name][0]
        elif name == "every model's statistics":  # counts and times move between calls
            assert served(native[name][1]) == served(aio[name][1])
        else:
            assert native[name] == aio[name], name
    assert "batch size 0: it must be 1 to" in native["batch 0"][1]
    assert native["inner step"][1] == "unknown model 'preprocessing'"
    assert native["other service"] == ("UNIMPLEMENTED", "Method not found!")
    assert served(native["every model's statistics"][1]) == set(fleet.models)  # the served ones only
    with grpc.insecure_channel(urls["direct"]) as direct:
        assert unary(direct, "ModelInfer", wine()) == native["infer"]  # the very bytes Triton answered


def test_llm_streams_are_what_triton_streams(urls: dict[str, str]) -> None:
    """The same greedy generation, piece by piece, straight from Triton and through each transport."""
    got = {}
    for name in ("direct", *TRANSPORTS):
        with FleetClient(urls[name], protocol="grpc", api_key="") as client:
            got[name] = list(client.stream("Name three rivers of Europe.", 12, min_tokens=12))
    assert len(got["direct"]) >= 2 and "".join(got["direct"]).strip()
    assert got["native"] == got["direct"] and got["aio"] == got["direct"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_dead_upstream_is_unavailable_and_the_door_stays_up(fleet: Fleet, transport: str) -> None:
    assert fleet.access is not None
    dead = f"127.0.0.1:{free_port()}"  # nobody listens there
    door = (
        NativeGrpcFrontDoor(fleet.access, dead)
        if transport == "native"
        else GrpcFrontDoorThread(fleet.access, dead)
    )
    port = door.start("127.0.0.1:0")
    assert port
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(3):
                assert unary(channel, "ModelInfer", wine())[0] == "UNAVAILABLE"
                assert unary(channel, "ModelConfig", CASES["step's config"][1])[0] == "UNAVAILABLE"
                with pytest.raises(grpc.RpcError) as ended:
                    stream(channel, [llm(CHAT.format("Hi"), 2, "d")])
                assert ended.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            # still up: what the door answers itself, and its checks before any forwarding
            assert unary(channel, "ServerLive", b"")[0] == "OK"
            assert unary(channel, "ModelInfer", wine(0))[0] == "INVALID_ARGUMENT"
    finally:
        door.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_stream_goes_on_after_a_refused_message(urls: dict[str, str], transport: str) -> None:
    with grpc.insecure_channel(urls[transport]) as channel:
        got = stream(channel, [wine(1, model="ensemble"), llm(CHAT.format("Say hi."), 6, "s1")])
    assert got[0].startswith("error: ensemble has no input 'FEATURES'"), got
    assert got[1:-1] == ["s1"] * (len(got) - 2) and got[-1] == "s1 final" and len(got) >= 3, got


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_cancelled_stream_stops_generating_upstream(fleet: Fleet, urls: dict[str, str], transport) -> None:
    tokens = "tritonfleet_llm_generated_tokens_total"
    before = metric(fleet.server, tokens)
    client = grpcclient.InferenceServerClient(urls[transport])
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put(error))
    client.async_stream_infer("ensemble", inputs("ensemble", LONG))
    for _ in range(3):
        assert got.get(timeout=120) is None
    client.stop_stream(cancel_requests=True)
    wait_idle(fleet.server)  # its slot is free...
    generated = metric(fleet.server, tokens) - before
    time.sleep(1)
    assert metric(fleet.server, tokens) - before == generated < 500  # ...because it stopped


def test_keys_limits_and_metrics_are_one_budget(fleet: Fleet, urls: dict[str, str]) -> None:
    keys = KeyFile(fleet.keys.file.path)
    user, admin, slow = keys.add("user"), keys.add("ops", admin=True), keys.add("slow", rpm=3)
    before = grpc_requests(fleet)
    time.sleep(1.5)  # the front door re-reads the file at most once a second
    try:
        channels = {t: grpc.insecure_channel(urls[t]) for t in TRANSPORTS}

        def bearer(key: str) -> tuple:
            return (("authorization", f"Bearer {key}"),)

        for channel in channels.values():
            assert unary(channel, "ModelInfer", wine())[0] == "UNAUTHENTICATED"
            assert unary(channel, "ServerReady", b"")[0] == "OK"  # probes need no key
            assert unary(channel, "ModelInfer", wine(), metadata=bearer(user))[0] == "OK"
            assert unary(channel, "RepositoryIndex", b"", metadata=bearer(user))[0] == "PERMISSION_DENIED"
            assert unary(channel, "RepositoryIndex", b"", metadata=bearer(admin))[0] == "OK"
            with pytest.raises(grpc.RpcError) as refused:
                stream(channel, [llm("hi", 2, "x")])
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
            assert stream(channel, [llm(CHAT.format("Hi"), 2, "k")], metadata=bearer(user))[-1] == "k final"
        # 3 a minute for "slow", over HTTP and both gRPC transports together
        assert unary(channels["native"], "ModelInfer", wine(), metadata=bearer(slow))[0] == "OK"
        assert unary(channels["aio"], "ModelInfer", wine(), metadata=bearer(slow))[0] == "OK"
        http = requests.get(
            f"http://{fleet.http_url}/v2/models/wine_sklearn/config",
            headers={"Authorization": f"Bearer {slow}"},
            timeout=30,
        )
        assert http.status_code == 200
        for channel in channels.values():
            code, _, retry = unary(channel, "ModelInfer", wine(), metadata=bearer(slow))
            assert code == "RESOURCE_EXHAUSTED" and int(retry) >= 1
        now = grpc_requests(fleet)  # right away: the calls answered OK are counted before a scrape
        counts = {labels: now[labels] - before.get(labels, 0) for labels in now}
        assert counts[("ModelInfer", "wine_sklearn", "user", "OK")] == 2  # one over each transport
        assert counts[("ModelInfer", "wine_sklearn", "slow", "OK")] == 2
        # refused before the model is read, counted under the key that is over its rate
        assert counts[("ModelInfer", "-", "slow", "RESOURCE_EXHAUSTED")] == 2
        assert counts[("ModelInfer", "-", "-", "UNAUTHENTICATED")] == 2
        assert counts[("ModelStreamInfer", "ensemble", "user", "OK")] == 2
        assert counts[("ModelStreamInfer", "-", "-", "UNAUTHENTICATED")] == 2
        assert counts[("RepositoryIndex", "-", "-", "PERMISSION_DENIED")] == 2
        assert counts[("RepositoryIndex", "-", "ops", "OK")] == 2
        for channel in channels.values():
            channel.close()
    finally:
        keys.save([])
        time.sleep(1.5)


def grpc_requests(fleet: Fleet) -> dict[tuple[str, ...], float]:
    """The front door's gRPC request counts by (route, model, key, status), from its metrics port."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(fleet.metrics_url, timeout=30).text
    families = text_string_to_metric_families(text)
    family = next(f for f in families if f.name == "tritonfleet_frontdoor_requests")
    return {
        (s.labels["route"], s.labels["model"], s.labels["key"], s.labels["status"]): s.value
        for s in family.samples
        if s.name.endswith("_total") and s.labels["protocol"] == "grpc"
    }


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_malformed_requests_are_refused(fleet: Fleet, urls: dict[str, str], transport: str) -> None:
    assert fleet.access is not None
    with grpc.insecure_channel(urls["direct"]) as direct:
        expected = unary(direct, "ModelInfer", wine(row=100))

    def correct() -> None:
        with grpc.insecure_channel(urls[transport]) as channel:
            assert unary(channel, "ModelInfer", wine(row=100)) == expected

    result = stress.run(
        fleet.http_url,
        urls[transport],
        list(fleet.access.public.models.values()),
        http_count=0,
        grpc_count=600,
        correct=correct,
        every=100,
    )
    assert not result.failures, result.failures
    assert len({family for family, _ in result.answers}) >= 20, result.answers


def wine_answer(answer: tuple) -> tuple[int, np.ndarray]:
    """A wine_sklearn answer's label and probabilities."""
    assert answer[0] == "OK", answer
    response = pb.ModelInferResponse.FromString(answer[1])
    raw = dict(zip((o.name for o in response.outputs), response.raw_output_contents, strict=True))
    return int(np.frombuffer(raw["LABEL"], np.int64)[0]), np.frombuffer(raw["PROBABILITIES"], np.float32)


def test_many_calls_at_once_get_their_own_answers(urls: dict[str, str]) -> None:
    values = list(range(0, 178, 3))  # wine samples of all three classes
    with grpc.insecure_channel(urls["direct"]) as direct:
        expected = [wine_answer(unary(direct, "ModelInfer", wine(row=v))) for v in values]
    assert {label for label, _ in expected} == {0, 1, 2}  # the answers differ
    with grpc.insecure_channel(urls["native"]) as channel, ThreadPoolExecutor(32) as pool:
        for _ in range(5):
            got = list(pool.map(lambda v: wine_answer(unary(channel, "ModelInfer", wine(row=v))), values))
            for (label, probabilities), (want_label, want) in zip(got, expected, strict=True):
                assert label == want_label  # batched with others, the floats' last bits may move
                np.testing.assert_allclose(probabilities, want, rtol=1e-5)
        prompts = [llm(CHAT.format(f"Count to {n}."), 5, f"r{n}") for n in range(4)]
        streams = list(pool.map(lambda m: stream(channel, [m]), prompts))
    assert [s[-1] for s in streams] == [f"r{n} final" for n in range(4)]


def test_stopping_ends_the_calls_in_flight(fleet: Fleet, urls: dict[str, str]) -> None:
    assert fleet.access is not None
    door = NativeGrpcFrontDoor(fleet.access, urls["direct"])
    port = door.start("127.0.0.1:0")
    assert port
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put(error))
    client.async_stream_infer("ensemble", inputs("ensemble", LONG))
    assert got.get(timeout=120) is None
    door.stop(grace_s=0.5)
    deadline = time.monotonic() + 60
    while True:  # the stream's end comes as an error (the server went away)
        error = got.get(timeout=max(deadline - time.monotonic(), 0.1))
        if error is not None:
            break
    client.stop_stream()
    wait_idle(fleet.server)  # the upstream call was cancelled too
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert unary(channel, "ServerLive", b"")[0] == "UNAVAILABLE"  # nobody listens any more
