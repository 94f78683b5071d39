"""Classifiers to ONNX, for the tabular models' ``convert``: the input named as given (FP32 [N, features];
the build gives the interface's ``FEATURES``), outputs as the converters name them (``label``,
``probabilities``), opsets every onnxruntime >= 1.16 runs (the GPU image's Python 3.10 gets onnxruntime 1.23
at most). Build time only: the converters are imported when one runs."""

from __future__ import annotations

from typing import Any

OPSETS = {"": 15, "ai.onnx.ml": 3}


def sklearn(estimator: Any, n_features: int, input_name: str) -> Any:
    """A scikit-learn classifier (or Pipeline) through skl2onnx, probabilities as one tensor."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    types = [(input_name, FloatTensorType([None, n_features]))]
    options = {id(estimator): {"zipmap": False}}  # probabilities as one tensor, not a list of maps
    return convert_sklearn(estimator, initial_types=types, options=options, target_opset=OPSETS)


def xgboost(estimator: Any, n_features: int, input_name: str) -> Any:
    """An XGBoost classifier through onnxmltools."""
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [(input_name, FloatTensorType([None, n_features]))]
    return convert_xgboost(estimator, initial_types=types, target_opset=OPSETS[""])
