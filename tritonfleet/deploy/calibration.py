"""Real sample inputs per TensorRT model, for int8 calibration and for checking a plan against onnxruntime.

A pipeline that owns a TensorRT model declares how its real inputs are made in
``tritonfleet/pipelines/<name>/calibration.py``: ``MODELS = {model: samples(repository, count)}``, each
returning arrays by input name, batch first, made by the pipeline's own preprocessing from real data. They
are saved as ``.npz`` for ``build/tensorrt_plan.py --calibration/--check`` (the image's export stage writes
them to ``/opt/tritonfleet/calibration``).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tritonfleet import pipelines

Samples = Callable[[Path, int], dict[str, np.ndarray]]
DEFAULT_COUNT = 64


def producers() -> dict[str, Samples]:
    """Every model with real sample inputs, by name, from the pipelines that declare them."""
    found: dict[str, Samples] = {}
    for name in pipelines.registry():
        module_name = f"{pipelines.__name__}.{name}.calibration"
        if importlib.util.find_spec(module_name) is None:
            continue
        found.update(importlib.import_module(module_name).MODELS)
    return found


def write(model: str, repository: Path, output: Path, count: int = DEFAULT_COUNT) -> Path:
    """``output`` (.npz) with ``count`` real inputs of ``model``."""
    makers = producers()
    if model not in makers:
        known = ", ".join(sorted(makers))
        raise KeyError(f"no real sample inputs are declared for {model!r}; known: {known}")
    arrays = makers[model](repository, count)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez(output, **arrays)
    return output
