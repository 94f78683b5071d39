"""Bad input to image_classifier: a clear error for that request only; the rest of the batch, the server
and every stub process carry on."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from tests.conftest import CAT_CLASSES, infer_concurrently
from tritonfleet.clients import FleetClient
from tritonfleet.server import TritonServer


def _big_png(width: int, height: int) -> bytes:
    """A huge-dimension image that is tiny on disk (1-bit, one colour): a decompression bomb."""
    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def bad_images(cat_jpeg: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (payload, words the error must contain)."""
    return {
        "empty": (b"", "empty input"),
        "random": (np.random.default_rng(0).bytes(4096), "not a decodable image"),
        "text": (b"Hello, this is not an image.\n" * 20, "not a decodable image"),
        "truncated": (cat_jpeg[: len(cat_jpeg) // 3], "not a decodable image"),
        "bomb": (_big_png(8_000, 6_000), "over the limit of 40000000"),
    }


@pytest.mark.parametrize("case", ["empty", "random", "text", "truncated", "bomb"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_bad_image_gets_clear_client_error(
    server: TritonServer, cat_jpeg: bytes, case: str, protocol
) -> None:
    payload, words = bad_images(cat_jpeg)[case]
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with FleetClient(url, protocol=protocol) as fleet, pytest.raises(InferenceServerException) as err:
        fleet.classify_image(payload)
    assert words in str(err.value)
    assert "IMAGE" in str(err.value)
    assert err.value.status() == ("StatusCode.INVALID_ARGUMENT" if protocol == "grpc" else "400")


def test_wrong_dtype_and_shape_are_rejected_by_triton(server: TritonServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    floats = grpcclient.InferInput("IMAGE", [1, 1], "FP32")
    floats.set_data_from_numpy(np.zeros((1, 1), np.float32))
    wrong_dtype = "data-type is 'FP32', but model 'image_classifier' expects 'BYTES'"
    with pytest.raises(InferenceServerException, match=wrong_dtype):
        client.infer("image_classifier", [floats])
    two = grpcclient.InferInput("IMAGE", [1, 2], "BYTES")
    two.set_data_from_numpy(np.array([[b"a", b"b"]], dtype=np.object_))
    wrong_shape = r"unexpected shape for input 'IMAGE'.*Expected \[-1,1\], got \[1,2\]"
    with pytest.raises(InferenceServerException, match=wrong_shape):
        client.infer("image_classifier", [two])
    client.close()


def _stats(client: grpcclient.InferenceServerClient, model: str) -> tuple[int, int]:
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def test_mixed_good_and_bad_requests_concurrently(server: TritonServer, cat_jpeg: bytes) -> None:
    """Good and bad requests sent together each get their own answer. image_preprocess runs each request on
    its own (a dynamic batcher there let one malformed request fail its whole batch:
    tests/frontdoor/test_fuzz.py); the good ones are batched by efficientnet_lite0."""
    bad = [payload for payload, _ in bad_images(cat_jpeg).values()]
    requests = [cat_jpeg if i % 2 == 0 else bad[i // 2 % len(bad)] for i in range(32)]
    stubs_before = server.stub_pids()
    sync = grpcclient.InferenceServerClient(server.grpc_url)
    inferences_before, executions_before = _stats(sync, "image_preprocess")
    classified_before, batches_before = _stats(sync, "efficientnet_lite0")

    def image(payload: bytes) -> list[grpcclient.InferInput]:
        image = grpcclient.InferInput("IMAGE", [1, 1], "BYTES")
        image.set_data_from_numpy(np.array([[payload]], dtype=np.object_))
        return [image]

    wanted = [grpcclient.InferRequestedOutput("PROBABILITIES", class_count=1)]
    results = infer_concurrently(server.grpc_url, "image_classifier", [image(p) for p in requests], wanted)
    for i, result in enumerate(results):
        if i % 2 == 0:
            assert not isinstance(result, BaseException), result
            top = result.as_numpy("PROBABILITIES")[0][0].decode()
            assert int(top.split(":")[1]) in CAT_CLASSES
        else:
            assert isinstance(result, InferenceServerException), result
            assert "IMAGE:" in str(result) and result.status() == "StatusCode.INVALID_ARGUMENT"

    inferences, executions = _stats(sync, "image_preprocess")
    assert inferences - inferences_before == executions - executions_before == len(requests)
    deadline = time.monotonic() + 30  # a composing model's statistics land after the ensemble has answered
    while (classified := _stats(sync, "efficientnet_lite0")[0]) < classified_before + len(requests) // 2:
        assert time.monotonic() < deadline, "efficientnet_lite0 never counted the good requests"
        time.sleep(0.1)
    classified, batches = _stats(sync, "efficientnet_lite0")
    assert classified - classified_before == len(requests) // 2  # the good ones only
    assert batches - batches_before < len(requests) // 2, "the good requests were never batched together"
    assert sync.is_server_ready()
    assert sync.is_model_ready("image_classifier")
    sync.close()
    assert server.stub_pids() == stubs_before, "a stub process died or was restarted"
