"""Real inputs of efficientnet_lite0 for TensorRT's int8 calibration and the GPU plan's check: scikit-image's
sample photos (bundled with the package, no download), each whole, mirrored and cut into halves, JPEG-encoded
and preprocessed exactly as image_preprocess serves them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tritonfleet.pipelines.image_classifier import imaging

MODEL = "efficientnet_lite0"
PHOTOS = (
    "astronaut", "camera", "cat", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass", "gravel",
    "horse", "hubble_deep_field", "immunohistochemistry", "logo", "moon", "page", "retina", "rocket", "text",
    "brick",
)  # fmt: skip


def _views(pixels: np.ndarray) -> list[np.ndarray]:
    half = pixels.shape[1] // 2
    return [pixels, pixels[:, ::-1], pixels[:, :half], pixels[:, half:]]


def samples(repository: Path, count: int) -> dict[str, np.ndarray]:
    """``count`` real inputs as ``{"input": float32 [count, 3, 224, 224]}``."""
    import skimage.data
    from PIL import Image

    tensors = []
    for name in PHOTOS:
        for view in _views(getattr(skimage.data, name)()):
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(view)).convert("RGB").save(buf, "JPEG", quality=90)
            tensors.append(imaging.preprocess(buf.getvalue(), max_pixels=imaging.DEFAULT_MAX_PIXELS))
            if len(tensors) == count:
                return {"input": np.stack(tensors)}
    raise ValueError(f"{MODEL}: {len(tensors)} sample images, fewer than the {count} asked for")


MODELS = {MODEL: samples}
