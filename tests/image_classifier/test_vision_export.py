"""The exported EfficientNet-Lite0 ONNX model with the served preprocessing, on onnxruntime (no server)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import skimage.data
from PIL import Image

from tritonfleet.pipelines.image_classifier.imaging import DEFAULT_MAX_PIXELS, preprocess

MODEL_DIR = Path(__file__).resolve().parents[2] / "model_repository" / "efficientnet_lite0"
MODEL = MODEL_DIR / "1" / "model.onnx"


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    if not MODEL.is_file():
        pytest.skip(
            f"{MODEL} not built yet: python build/image_classifier/export_onnx.py --output {MODEL.parent}"
        )
    return ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """chelsea (a cat) and coffee, JPEG-encoded and preprocessed as the server does: [2, 3, 224, 224]."""
    tensors = []
    for name in ("chelsea", "coffee"):
        buf = io.BytesIO()
        Image.fromarray(getattr(skimage.data, name)()).save(buf, format="JPEG", quality=90)
        tensors.append(preprocess(buf.getvalue(), max_pixels=DEFAULT_MAX_PIXELS))
    return np.stack(tensors)


def infer(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    (probs,) = session.run(["probabilities"], {"input": x})
    return probs


def test_graph_io(session: ort.InferenceSession) -> None:
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("input", "tensor(float)", [3, 224, 224])
    assert (out.name, out.type, out.shape[1:]) == ("probabilities", "tensor(float)", [1000])
    assert isinstance(inp.shape[0], str) and isinstance(out.shape[0], str)  # dynamic batch


def test_predictions(session: ort.InferenceSession, photos: np.ndarray) -> None:
    labels = (MODEL_DIR / "labels.txt").read_text().splitlines()
    cat, coffee = infer(session, photos)
    assert 281 <= cat.argmax() <= 285, labels[cat.argmax()]
    top5 = set(np.argsort(-coffee)[:5].tolist())
    assert top5 & {967, 968, 504}, [labels[i] for i in top5]


def test_probabilities_sum_to_one(session: ort.InferenceSession, photos: np.ndarray) -> None:
    probs = infer(session, photos)
    assert probs.dtype == np.float32 and probs.shape == (2, 1000)
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_batch_equals_singles(session: ort.InferenceSession, photos: np.ndarray) -> None:
    singles = np.concatenate([infer(session, photos[i : i + 1]) for i in range(len(photos))])
    np.testing.assert_allclose(infer(session, photos), singles, atol=1e-5)


def test_labels() -> None:
    labels = (MODEL_DIR / "labels.txt").read_text().splitlines()
    assert len(labels) == 1000 and all(labels)
    assert (labels[281], labels[285], labels[504], labels[967], labels[968]) == (
        "tabby",
        "Egyptian cat",
        "coffee mug",
        "espresso",
        "cup",
    )
