"""The image pipeline's model code without a server: image_preprocess and the onnxruntime backend running
the real EfficientNet-Lite0 ONNX export on real photos (tests/python_models.py, the fake pb_utils)."""

from __future__ import annotations

import numpy as np
import pytest

from tests import fake_pb_utils as pb_utils
from tests.conftest import CAT_CLASSES, COFFEE_CLASSES
from tests.python_models import ONNXRUNTIME_BACKEND, PythonModel, load, row
from tritonfleet.artifacts import REPOSITORY


@pytest.fixture(scope="module")
def preprocess() -> PythonModel:
    model = load("image_preprocess")
    yield model
    model.finalize()


@pytest.fixture(scope="module")
def classifier() -> PythonModel:
    if not (REPOSITORY / "efficientnet_lite0/1/model.onnx").is_file():
        pytest.skip("no efficientnet_lite0/1/model.onnx (fleet build image_classifier)")
    return load("efficientnet_lite0", model_file=ONNXRUNTIME_BACKEND)


def test_photos_are_classified(preprocess, classifier, cat_jpeg, coffee_png) -> None:
    pixels = preprocess.infer({"IMAGE": [[cat_jpeg], [coffee_png]]}).outputs["PIXEL_VALUES"]
    assert pixels.shape == (2, 3, 224, 224) and pixels.dtype == np.float32
    assert -1.0 <= pixels.min() < 0 < pixels.max() <= 1.0  # (x - 127) / 128
    probabilities = classifier.infer({"input": pixels}).outputs["probabilities"]
    assert probabilities.shape == (2, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)  # softmax in the graph
    cat, coffee = probabilities.argmax(axis=1)
    assert cat in CAT_CLASSES and coffee in COFFEE_CLASSES


def test_onnxruntime_backend_splits_a_dynamic_batch_per_request(preprocess, classifier, cat_jpeg, coffee_png):
    """Requests of batch 2 and 1 run as one onnxruntime batch of 3; each gets its own rows back."""
    pixels = preprocess.infer({"IMAGE": [[cat_jpeg], [coffee_png]]}).outputs["PIXEL_VALUES"]
    alone = [classifier.infer({"input": pixels[i : i + 1]}).outputs["probabilities"] for i in range(2)]
    answers = classifier.execute(
        [classifier.request({"input": pixels}), classifier.request({"input": pixels[1:]})]
    )
    together = [a.outputs["probabilities"] for a in answers]
    assert [t.shape for t in together] == [(2, 1000), (1, 1000)]
    np.testing.assert_allclose(together[0], np.concatenate(alone), atol=1e-5)
    np.testing.assert_allclose(together[1], alone[1], atol=1e-5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GIF89a, not really", "IMAGE: not a decodable image"),
        (b"", "IMAGE: empty input"),
        ("truncated", "IMAGE: not a decodable image (OSError: image file is truncated"),
    ],
)
def test_a_bad_image_is_the_clients_error_for_its_own_request(preprocess, cat_jpeg, data, message) -> None:
    data = cat_jpeg[: len(cat_jpeg) // 2] if data == "truncated" else data
    good, bad, also_good = preprocess.execute(
        [preprocess.request(row(IMAGE=x)) for x in (cat_jpeg, data, cat_jpeg)]  # one dynamic batch
    )
    assert good.outputs["PIXEL_VALUES"].shape == also_good.outputs["PIXEL_VALUES"].shape == (1, 3, 224, 224)
    assert bad.error.code() == pb_utils.TritonError.INVALID_ARG and bad.error.message().startswith(message)


def test_a_fault_fails_its_own_request_as_internal(cat_jpeg) -> None:
    model = load("image_preprocess")
    decode = model.instance._one
    model.instance._one = lambda item: decode(item) if item != b"bug" else 1 / 0
    good, faulty = model.execute([model.request(row(IMAGE=cat_jpeg)), model.request(row(IMAGE=b"bug"))])
    assert good.outputs["PIXEL_VALUES"].shape == (1, 3, 224, 224)
    assert faulty.error.code() == pb_utils.TritonError.INTERNAL
    assert faulty.error.message() == "image_preprocess: internal error: ZeroDivisionError: division by zero"
    model.finalize()


def test_max_pixels_comes_from_the_config(cat_jpeg) -> None:
    small = load("image_preprocess", parameters={"max_pixels": "1000"})
    error = small.infer(row(IMAGE=cat_jpeg)).error
    assert error.code() == pb_utils.TritonError.INVALID_ARG
    assert "over the limit of 1000 (max_pixels)" in error.message()
    small.finalize()
