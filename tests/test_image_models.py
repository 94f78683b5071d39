"""The image pipeline's model code without a server: image_preprocess and the onnxruntime backend running
the real EfficientNet-Lite0 ONNX export on real photos (tests/python_models.py, the fake pb_utils)."""

from __future__ import annotations

import numpy as np
import pytest

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
        pytest.skip("no efficientnet_lite0/1/model.onnx (fleet build vision)")
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


def test_a_bad_image_fails_its_own_request_only(preprocess, cat_jpeg) -> None:
    answers = preprocess.execute(
        [preprocess.request(row(IMAGE=cat_jpeg)), preprocess.request(row(IMAGE=b"GIF89a, not really"))]
    )
    assert answers[0].outputs["PIXEL_VALUES"].shape == (1, 3, 224, 224)
    assert answers[1].error.message().startswith("IMAGE: not a decodable image")


def test_max_pixels_comes_from_the_config(cat_jpeg) -> None:
    small = load("image_preprocess", parameters={"max_pixels": "1000"})
    error = small.infer(row(IMAGE=cat_jpeg)).error
    assert "over the limit of 1000 (max_pixels)" in error.message()
    small.finalize()
