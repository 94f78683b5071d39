"""Train a classic-ML classifier on a dataset bundled with scikit-learn, export it to ONNX and check it.

Usage: ``python build/tabular/train.py --model wine_sklearn --repository model_repository
--output model_repository/wine_sklearn/1``

Each model is a module of ``tritonfleet/pipelines/tabular/models/``: its dataset, estimator and converter
(``breast_cancer_xgboost``: XGBoost through onnxmltools; ``wine_sklearn``: a scikit-learn Pipeline,
StandardScaler + LogisticRegression, through skl2onnx).

Training is deterministic (fixed seeds, one thread) on a stratified 75% split; the held-out accuracy goes in
the report. The ONNX graph gets the serving interface of the model's configs: ``FEATURES`` (FP32
[N, features]) in, ``LABEL`` (INT64 [N, 1]) and ``PROBABILITIES`` (FP32 [N, classes]) out. Checks, each fatal
(exit 1, nothing written): the dataset's feature and class names equal the configs' ``feature_names`` and
``class_names`` parameters on both targets, the configs' tensors match the graph, and onnxruntime on the
exported graph gives the labels of the trained model on every row of the dataset and its probabilities
within 1e-5. Writes ``model.onnx`` and ``training.json`` (the report).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from sklearn.model_selection import train_test_split
from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet.clients import tabular
from tritonfleet.pipelines.tabular import models
from tritonfleet.pipelines.tabular.convert import OPSETS
from tritonfleet.repository import TARGETS, Repository

SEED = 0
TOLERANCE = 1e-5  # max abs difference of probabilities, onnxruntime vs the trained model
PACKAGES = ("scikit-learn", "xgboost-cpu", "skl2onnx", "onnxmltools", "onnx", "onnxruntime", "numpy")


@dataclass(frozen=True)
class Trained:
    estimator: Any
    features: np.ndarray  # every row of the dataset, float32: what clients send
    target: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    test_accuracy: float


def train(model: str) -> Trained:
    """Fit ``model`` on its dataset's training split (deterministic)."""
    spec = models.get(model)
    data = spec.dataset()
    x = data.data.astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, data.target, test_size=0.25, stratify=data.target, random_state=SEED
    )
    estimator = spec.fit(x_train, y_train)
    return Trained(
        estimator=estimator,
        features=x,
        target=data.target,
        feature_names=tuple(str(n) for n in data.feature_names),
        class_names=tuple(str(n) for n in data.target_names),
        test_accuracy=float((estimator.predict(x_test) == y_test).mean()),
    )


def serving_interface(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """Rename the converter's ``label`` [N] and ``probabilities`` [N, C] to the served ``LABEL`` [N, 1]
    (an Unsqueeze) and ``PROBABILITIES``, and name the graph (converters name it with a random UUID, which
    would make every build's bytes differ)."""
    graph = model.graph
    graph.name = name
    names = [o.name for o in graph.output]
    if names != ["label", "probabilities"]:
        raise ValueError(f"expected the converter's outputs label, probabilities; got {names}")
    renames = {"label": "label_flat", "probabilities": tabular.PROBABILITIES}
    for node in graph.node:
        node.output[:] = [renames.get(n, n) for n in node.output]
    classes = graph.output[1].type.tensor_type.shape.dim[1].dim_value
    del graph.output[:]
    graph.initializer.append(helper.make_tensor("label_axes", TensorProto.INT64, [1], [1]))
    graph.node.append(helper.make_node("Unsqueeze", ["label_flat", "label_axes"], [tabular.LABEL]))
    graph.output.extend(
        [
            helper.make_tensor_value_info(tabular.LABEL, TensorProto.INT64, [None, 1]),
            helper.make_tensor_value_info(tabular.PROBABILITIES, TensorProto.FLOAT, [None, classes]),
        ]
    )
    if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", OPSETS[""]))
    onnx.checker.check_model(model, full_check=True)
    return model


def check_configs(repository: Path, model: str, trained: Trained) -> None:
    """The configs of ``model`` (both targets) declare the trained model's interface: raises ValueError."""
    repo = Repository(repository)
    for target in TARGETS:
        config = repo.config(model, target)
        where = f"{model} ({target} config)"
        params = {k: v.string_value for k, v in config.parameters.items()}
        for key, expected in (
            (tabular.FEATURE_NAMES, trained.feature_names),
            (tabular.CLASS_NAMES, trained.class_names),
        ):
            declared = tabular.split_names(params.get(key, ""))
            if declared != expected:
                raise ValueError(
                    f"{where}: parameter {key} is {list(declared)}; the dataset has {list(expected)}"
                )
        tensors = {t.name: (t.data_type, list(t.dims)) for t in (*config.input, *config.output)}
        wanted = {
            tabular.INPUT: (mc.TYPE_FP32, [len(trained.feature_names)]),
            tabular.LABEL: (mc.TYPE_INT64, [1]),
            tabular.PROBABILITIES: (mc.TYPE_FP32, [len(trained.class_names)]),
        }
        if tensors != wanted or config.max_batch_size < 1:
            raise ValueError(
                f"{where}: tensors {tensors} (max_batch_size {config.max_batch_size}); want {wanted}, batched"
            )


def check_parity(model_bytes: bytes, trained: Trained) -> dict[str, Any]:
    """onnxruntime on the export vs the trained model on every row: raises ValueError past the tolerance."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(
        [tabular.LABEL, tabular.PROBABILITIES], {tabular.INPUT: trained.features}
    )
    expected_labels = trained.estimator.predict(trained.features)
    expected = trained.estimator.predict_proba(trained.features)
    wrong = int((labels.reshape(-1) != expected_labels).sum())
    diff = float(np.abs(probabilities - expected).max())
    if labels.shape != (len(expected_labels), 1) or probabilities.shape != expected.shape:
        raise ValueError(f"output shapes {labels.shape}, {probabilities.shape}; expected {expected.shape}")
    if wrong or diff > TOLERANCE:
        raise ValueError(f"parity failed: {wrong} label(s) differ, max probability difference {diff:.3g}")
    return {"rows": len(expected), "labels_differing": wrong, "max_abs_probability_difference": diff}


def build(model: str, repository: Path, output: Path) -> dict[str, Any]:
    trained = train(model)
    check_configs(repository, model, trained)
    converted = models.get(model).convert(trained.estimator, len(trained.feature_names), tabular.INPUT)
    exported = serving_interface(converted, model)
    model_bytes = exported.SerializeToString()
    parity = check_parity(model_bytes, trained)
    report = {
        "model": model,
        "dataset": f"{models.get(model).source}: dataset()",
        "rows": len(trained.target),
        "features": len(trained.feature_names),
        "classes": list(trained.class_names),
        "test_accuracy": trained.test_accuracy,
        "parity": {**parity, "tolerance": TOLERANCE},
        "opsets": {o.domain or "ai.onnx": o.version for o in exported.opset_import},
        "versions": {p: version(p) for p in PACKAGES},
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "model.onnx").write_bytes(model_bytes)
    (output / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, choices=sorted(models.discover()))
    parser.add_argument("--repository", type=Path, required=True, help="the configs to check against")
    parser.add_argument("--output", type=Path, required=True, help="the model's version folder")
    args = parser.parse_args()
    try:
        report = build(args.model, args.repository, args.output)
    except ValueError as exc:
        print(f"{args.model}: {exc}", file=sys.stderr)
        return 1
    parity = report["parity"]
    print(
        f"{args.model}: held-out accuracy {report['test_accuracy']:.3f}; parity on {parity['rows']} rows: "
        f"labels identical, max probability difference {parity['max_abs_probability_difference']:.2g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
