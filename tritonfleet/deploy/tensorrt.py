"""Which ONNX models of the fleet TensorRT serves and which stay on onnxruntime: one rule, here.

TensorRT's ONNX parser implements the operators of the default ``ai.onnx`` domain (and its own plugins),
none of ONNX-ML's ``ai.onnx.ml`` (TreeEnsembleClassifier, LinearClassifier, Scaler, ZipMap, ...). So a
model whose graph is all ``ai.onnx`` gets a TensorRT plan on the GPU (platform ``tensorrt_plan``, built by
``build/tensorrt_plan.py``), and a classic-ML export (the tree ensembles and the scikit-learn pipeline of
the tabular pipeline) stays ``onnxruntime_onnx`` on CPU instances, where a few microseconds of tree walking
gain nothing from a GPU and would pay a host-device copy each way. Tests hold every GPU config and every
``fleet build --target gpu`` recipe to this rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

TENSORRT = "tensorrt_plan"
ONNXRUNTIME = "onnxruntime_onnx"
TENSORRT_DOMAINS = frozenset({"", "ai.onnx"})


@dataclass(frozen=True)
class Decision:
    platform: str  # TENSORRT or ONNXRUNTIME
    reason: str


def decide(model: Any) -> Decision:
    """The platform for an ``onnx.ModelProto`` (its graph's operator domains decide)."""
    nodes = model.graph.node
    foreign = sorted({f"{n.domain}.{n.op_type}" for n in nodes if n.domain not in TENSORRT_DOMAINS})
    if foreign:
        shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
        why = f"operators outside ai.onnx, which TensorRT's ONNX parser lacks: {shown}"
        return Decision(ONNXRUNTIME, why)
    return Decision(TENSORRT, "every operator is in ai.onnx: TensorRT builds a plan for it")


def decide_file(path: Path) -> Decision:
    import onnx  # the build extra: only where ONNX files exist

    return decide(onnx.load(str(path), load_external_data=False))


def onnx_models(repository: Path) -> dict[str, Path]:
    """Every model folder of the repository with an exported ``1/model.onnx``, by name."""
    return {p.parent.parent.name: p for p in sorted(repository.glob("*/1/model.onnx"))}
