"""The front door on a fleet of its own (tritonserver's memory capped): the crash requests, malformed
families, large images posted like curl and requests, keys and limits, hidden steps, admin APIs, and the
fuzzer; after all of it the server, its stubs and every correct answer are as before."""

from __future__ import annotations

import http.client
import io
import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.conftest import CAT_CLASSES, running_fleet
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.clients import FleetClient
from tritonfleet.fleet import Fleet
from tritonfleet.frontdoor.keys import KeyFile
from tritonfleet.tools import stress

pytestmark = pytest.mark.server

MEMORY_CAP = 12 << 30  # RLIMIT_DATA of tritonserver and its stubs: a runaway allocation fails there
FUZZ_HTTP, FUZZ_GRPC = 6000, 4000


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("frontdoor"), memory_limit=MEMORY_CAP) as f:
        yield f


@pytest.fixture(scope="module")
def before(fleet: Fleet, cat_jpeg: bytes) -> dict:
    """Correct answers and the model processes before anything hostile was sent."""
    with FleetClient(fleet.http_url, api_key="") as c:
        return {
            "classes": [x.index for x in c.classify_image(cat_jpeg, top_k=5)],
            "text": c.generate("Name three primary colors.", max_tokens=12),
            "stubs": fleet.server.stub_pids(),
        }


def raw_request(port: int, data: bytes, timeout: float = 60) -> tuple[int, bytes]:
    """Send bytes, read one HTTP answer (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def post(fleet: Fleet, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    r = requests.post(f"http://{fleet.http_url}{path}", data=body, headers=headers or {}, timeout=120)
    return r.status_code, (r.json() if r.content else {})


def alive(fleet: Fleet, before: dict) -> None:
    assert fleet.server.process is not None and fleet.server.process.poll() is None
    assert fleet.server.stub_pids() == before["stubs"], "a model process died or restarted"


# --- the three crash requests of the issue ---


def test_huge_shape_is_400_and_the_server_lives(fleet: Fleet, before: dict) -> None:
    body = {
        "inputs": [{"name": "input", "shape": [100000000, 3, 224, 224], "datatype": "FP32", "data": [1.0]}]
    }
    status, answer = post(fleet, "/v2/models/efficientnet_lite0/infer", json.dumps(body).encode())
    assert status == 404 and "efficientnet_lite0" in answer["error"]  # an internal step: not served
    body["inputs"][0].update(name="IMAGE", datatype="BYTES", shape=[100000000, 1], data=["x"])
    status, answer = post(fleet, "/v2/models/image_classifier/infer", json.dumps(body).encode())
    assert status == 400 and "batch size 100000000" in answer["error"]
    llm = {"inputs": [{"name": "max_tokens", "shape": [100000000, 1000], "datatype": "INT32", "data": [1]}]}
    status, answer = post(fleet, "/v2/models/tensorrt_llm_bls/infer", json.dumps(llm).encode())
    assert status == 400 and "max_tokens" in answer["error"]
    alive(fleet, before)


def test_form_encoded_5mb_body_is_handled(fleet: Fleet, before: dict) -> None:
    text = "word " * (1 << 20)  # 5 MB, the way curl -d sends it
    body = json.dumps({"text_input": text, "max_tokens": 4}).encode()
    status, answer = post(
        fleet,
        "/v2/models/tensorrt_llm_bls/generate",
        body,
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    # It reaches the model as JSON with a length, which refuses a prompt longer than its context.
    assert status == 400 and "tokens" in answer["error"], (status, answer)
    alive(fleet, before)


def test_600000_chunks_are_refused_without_harm(fleet: Fleet, before: dict) -> None:
    chunks = b"1\r\nx\r\n" * 600_000 + b"0\r\n\r\n"
    head = b"POST /v2/repository/index HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, body = raw_request(fleet.ports.http, head + chunks)
    assert status == 403 and b"admin key" in body  # decoded here, never passed on
    alive(fleet, before)


# --- a large real photo posted the way curl and requests post it ---


def big_png(cat: bytes) -> bytes:
    from PIL import Image

    image = Image.open(io.BytesIO(cat)).convert("RGB").resize((3000, 1900))
    noise = np.random.default_rng(0).integers(-6, 7, (1900, 3000, 3))
    pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def test_8mb_png_posted_like_curl_and_requests_gets_its_classes(fleet: Fleet, cat_jpeg: bytes) -> None:
    png = big_png(cat_jpeg)
    assert len(png) > 8 << 20
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "IMAGE",
                    "shape": [1, 1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(png) + 4},
                }
            ],
            "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": 3}}],
        }
    ).encode()
    body = header + struct.pack("<I", len(png)) + png
    length = {"Inference-Header-Content-Length": str(len(header))}
    for content_type in ("application/x-www-form-urlencoded", None):  # curl --data-binary, requests' data=
        headers = {**length, **({"Content-Type": content_type} if content_type else {})}
        status, answer = post(fleet, "/v2/models/image_classifier/infer", body, headers)
        assert status == 200, answer
        top = [int(c.split(":")[1]) for c in answer["outputs"][0]["data"]]
        assert top[0] in CAT_CLASSES, answer


# --- malformed families answered 4xx, each with its message ---


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{bad", "not valid JSON"),
        (
            b'{"inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES", "data": [NaN]}]}',
            "not valid JSON",
        ),
        (
            b'{"inputs": [{"name": "IMAGE", "shape": [-1, 1], "datatype": "BYTES", "data": ["x"]}]}',
            "negative",
        ),
        (
            b'{"inputs": [{"name": "IMAGE", "shape": [2, 1], "datatype": "BYTES", "data": ["x"]}]}',
            "2 elements",
        ),
        (
            b'{"inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}',
            "datatype BYTES",
        ),
        (
            b'{"inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES", "data": [1]}]}',
            "valid BYTES",
        ),
        (b'{"inputs": "x"}', "'inputs' must be a list"),
        (b"[]", "JSON object"),
    ],
)
def test_malformed_json_is_400_with_a_message(fleet: Fleet, body: bytes, message: str) -> None:
    status, answer = post(fleet, "/v2/models/image_classifier/infer", body)
    assert status == 400 and message in answer["error"], answer


def test_body_over_the_limit_is_413(fleet: Fleet) -> None:
    limit = fleet.limits.max_body_bytes
    head = b"POST /v2/models/image_classifier/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (
        limit + 1
    )
    status, body = raw_request(fleet.ports.http, head)
    assert status == 413 and b"limit" in body


def test_internal_steps_are_hidden_and_public_ones_served(fleet: Fleet) -> None:
    grpc_client = grpcclient.InferenceServerClient(fleet.grpc_url)
    for model in ("image_preprocess", "efficientnet_lite0", "preprocessing", "postprocessing"):
        # Their configs are readable (perf_analyzer reads an ensemble's steps'), nothing else is.
        url = f"http://{fleet.http_url}/v2/models/{model}"
        assert requests.get(f"{url}/config", timeout=30).json()["name"] == model
        assert grpc_client.get_model_config(model).config.name == model
        assert requests.post(f"{url}/infer", data=b'{"inputs": []}', timeout=30).status_code == 404
        stats = requests.get(f"{url}/stats", timeout=30).json()
        assert stats["model_stats"][0]["name"] == model, stats
        tensor = grpcclient.InferInput("x", [1], "FP32")
        tensor.set_data_from_numpy(np.zeros(1, np.float32))
        with pytest.raises(InferenceServerException, match="unknown model"):
            grpc_client.infer(model, [tensor])
    every = requests.get(f"http://{fleet.http_url}/v2/models/stats", timeout=30).json()["model_stats"]
    assert {m["name"] for m in every} == set(fleet.models)  # the served ones (fleet serves nothing else)
    for model in ("image_classifier", "ensemble", "tensorrt_llm_bls", "tensorrt_llm"):
        config = requests.get(f"http://{fleet.http_url}/v2/models/{model}/config", timeout=30).json()
        assert config["name"] == model


def test_errors_carry_no_internal_names(fleet: Fleet) -> None:
    body = json.dumps(
        {"inputs": [{"name": "IMAGE", "shape": [1, 1], "datatype": "BYTES", "data": ["not an image"]}]}
    )
    status, answer = post(fleet, "/v2/models/image_classifier/infer", body.encode())
    assert status >= 400, (status, answer)
    assert "image" in answer["error"].lower(), (status, answer)
    assert str(REPOSITORY) not in answer["error"] and "shm_region" not in answer["error"]


# --- keys, limits, admin APIs (keys added to the running server's file) ---


def test_keys_limits_and_admin_apis(fleet: Fleet) -> None:
    url = f"http://{fleet.http_url}"
    assert (
        requests.get(f"{url}/v2/models/image_classifier/config", timeout=30).status_code == 200
    )  # no keys yet
    assert requests.post(f"{url}/v2/repository/index", timeout=30).status_code == 403  # admin: never without
    keys = KeyFile(fleet.keys.file.path)
    user, admin = keys.add("user"), keys.add("ops", admin=True)
    limited = keys.add("slow", rpm=2)
    time.sleep(1.5)  # the front door re-reads the file at most once a second
    try:
        check_keys(fleet, keys, user, admin, limited)
    finally:
        keys.save([])
        time.sleep(1.5)
    assert (
        requests.get(f"{url}/v2/models/image_classifier/config", timeout=30).status_code == 200
    )  # open again


def check_keys(fleet: Fleet, keys: KeyFile, user: str, admin: str, limited: str) -> None:
    url = f"http://{fleet.http_url}"

    def get(key: str | None, path: str = "/v2/models/image_classifier/config") -> requests.Response:
        return requests.get(url + path, headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=30)

    assert get(None).status_code == 401 and get(None).headers["WWW-Authenticate"] == "Bearer"
    assert get("tf-wrong").status_code == 401
    assert get(user).status_code == 200
    assert get(None, "/v2/health/ready").status_code == 200  # probes carry no key
    assert requests.get(fleet.metrics_url, timeout=30).status_code == 200  # nor does Prometheus
    assert (
        requests.post(url + "/v2/repository/index", headers={"Authorization": f"Bearer {user}"}).status_code
        == 403
    )
    index = requests.post(
        url + "/v2/repository/index", headers={"Authorization": f"Bearer {admin}"}, timeout=30
    )
    assert index.status_code == 200 and {m["name"] for m in index.json()} >= set(fleet.public)
    shm = requests.get(url + "/v2/systemsharedmemory/status", headers={"Authorization": f"Bearer {admin}"})
    assert shm.status_code == 403  # never, not even for an admin
    upload = json.dumps({"parameters": {"file:1/model.py": "aW1wb3J0IG9z"}})
    load = requests.post(
        url + "/v2/repository/models/image_preprocess/load",
        data=upload,
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert load.status_code == 400 and "uploaded" in load.json()["error"]
    assert [get(limited).status_code for _ in range(3)] == [200, 200, 429]
    assert int(get(limited).headers["Retry-After"]) >= 1

    client = grpcclient.InferenceServerClient(fleet.grpc_url)
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        client.get_model_config("image_classifier")
    assert client.get_model_config(
        "image_classifier", headers={"authorization": f"Bearer {user}"}
    ).config.name
    with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
        client.get_model_repository_index(headers={"authorization": f"Bearer {user}"})
    assert client.get_model_repository_index(headers={"authorization": f"Bearer {admin}"}).models
    with pytest.raises(InferenceServerException, match="RESOURCE_EXHAUSTED"):
        client.get_model_config("image_classifier", headers={"authorization": f"Bearer {limited}"})
    assert client.is_server_ready()  # probes: no key

    # /v1 (the OpenAI app behind the front door): the same keys; tokens per minute from its usage hook
    assert get(None, "/v1/models").status_code == 401
    models = get(user, "/v1/models").json()["data"]
    assert "smollm2-135m-instruct" in {m["id"] for m in models}
    assert requests.get(f"{fleet.openai_url}/models", timeout=30).status_code == 401  # its own port too
    tokens = keys.add("tokens", tpm=1)
    time.sleep(1.5)
    chat = {
        "model": "smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4,
    }
    bearer = {"Authorization": f"Bearer {tokens}"}
    first = requests.post(f"{fleet.openai_url}/chat/completions", json=chat, headers=bearer, timeout=120)
    assert first.status_code == 200 and first.json()["usage"]["total_tokens"] > 1
    second = requests.post(f"{fleet.openai_url}/chat/completions", json=chat, headers=bearer, timeout=120)
    assert (
        second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
    )  # the minute's budget is spent

    keys.revoke("user")
    time.sleep(1.5)
    assert get(user).status_code == 401 and get(admin).status_code == 200

    metrics = requests.get(fleet.metrics_url, timeout=30).text
    assert 'tritonfleet_frontdoor_rejections_total{reason="rate"}' in metrics
    assert 'key="ops"' in metrics and "nv_inference_request_success" in metrics  # Triton's metrics too


# --- the fuzzer ---


def test_fuzz_http_and_grpc_malformed_requests(fleet: Fleet, before: dict, cat_jpeg: bytes) -> None:
    """10,000 malformed requests (HTTP and gRPC, every family in turn) with correct ones mixed in: every
    malformed one 4xx / a client-error code, every correct one the same answer as before, nobody dies."""
    with FleetClient(fleet.http_url, api_key="") as good:

        def correct() -> None:
            assert [x.index for x in good.classify_image(cat_jpeg, top_k=5)] == before["classes"]

        result = stress.run(
            fleet.http_url,
            fleet.grpc_url,
            list(fleet.access.public.models.values()),
            http_count=FUZZ_HTTP,
            grpc_count=FUZZ_GRPC,
            correct=correct,
        )
    assert not result.failures, result.failures
    assert result.sent == FUZZ_HTTP + FUZZ_GRPC >= 10_000
    families = {family for family, _ in result.answers}
    assert len(families) >= 35, families
    with FleetClient(fleet.http_url, api_key="") as c:
        assert [x.index for x in c.classify_image(cat_jpeg, top_k=5)] == before["classes"]
        assert c.generate("Name three primary colors.", max_tokens=12) == before["text"]
    with FleetClient(fleet.grpc_url, protocol="grpc", api_key="") as c:
        assert [x.index for x in c.classify_image(cat_jpeg, top_k=5)] == before["classes"]
    alive(fleet, before)


def test_soak_one_minute_of_mixed_traffic_has_no_errors(fleet: Fleet) -> None:
    from tritonfleet.tools import soak

    result = soak.run(fleet, minutes=1.0, concurrency=16)
    assert result["errors"] == 0, result["error_samples"]
    from tritonfleet import pipelines

    probed = {p.name for p in pipelines.registry().values() if p.probe}
    assert set(result["by_pipeline"]) == probed | {"llm_stream"}
    assert all(n > 0 for n in result["by_pipeline"].values()), result["by_pipeline"]


def test_not_local_without_keys_refuses_to_start(tmp_path: Path) -> None:
    from tritonfleet.fleet import FleetError

    f = Fleet.on_free_ports(
        REPOSITORY, models=["image_classifier"], host="0.0.0.0", keys_path=tmp_path / "k.json"
    )
    with pytest.raises(FleetError, match="needs API keys"):
        f.start()
    Fleet.on_free_ports(
        REPOSITORY, host="0.0.0.0", insecure=True, keys_path=tmp_path / "k.json"
    ).check_secure()
