"""Real inputs for the measurements, perf_analyzer's ``--input-data``: made by each pipeline's own code.

A pipeline declares them where it already makes real inputs: ``calibration.MODELS`` (the TensorRT models'
calibration samples, tritonfleet/deploy/calibration.py) or ``bench.tuning.SAMPLES`` (the tabular models'
dataset rows), each ``{model: samples(repository, count)}`` returning arrays by input name, batch first. A
model with neither is measured on perf_analyzer's random data.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np

from tritonfleet import pipelines
from tritonfleet.deploy.calibration import Samples

HOOKS = (("calibration", "MODELS"), ("bench.tuning", "SAMPLES"))


def _declared(module: str) -> bool:
    """Whether ``module`` exists (False too where a parent is a module, not a package)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def producers() -> dict[str, Samples]:
    """Every model with real inputs, by name, from the pipelines' hooks."""
    found: dict[str, Samples] = {}
    for name in pipelines.registry():
        for module_name, attribute in HOOKS:
            qualified = f"{pipelines.__name__}.{name}.{module_name}"
            if _declared(qualified):
                found.update(getattr(importlib.import_module(qualified), attribute, {}))
    return found


def write(model: str, repository: Path, path: Path, count: int = 32) -> Path | None:
    """``--input-data`` JSON with ``count`` real requests of batch 1 for ``model``; None when the model has
    no declared inputs."""
    makers = producers()
    if model not in makers:
        return None
    arrays = makers[model](repository, count)
    rows = min(len(a) for a in arrays.values())
    requests = [{name: np.ascontiguousarray(a[i]) for name, a in arrays.items()} for i in range(rows)]
    from tritonfleet.tools.bench.perf_analyzer import write_input_data  # the tools extra

    return write_input_data(requests, path)
