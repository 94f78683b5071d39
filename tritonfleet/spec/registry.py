"""Finds the declarations: every ``tritonfleet/pipelines/<name>/interface.py`` lists its models in ``MODELS``.

Only the interface modules are imported, never the pipelines' declarations (``pipeline.py``) or their model
logic, so reading the interfaces costs the standard library and the declarations themselves.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tritonfleet.spec.declare import Model

PIPELINES = "tritonfleet.pipelines"
INTERFACE = "interface"


@dataclass(frozen=True)
class Declared:
    """A model and the file that declares it (``tritonfleet/pipelines/llm/interface.py``)."""

    model: Model
    source: str


def interface_modules() -> list[str]:
    """The interface modules of the pipeline packages, by pipeline name."""
    package = importlib.util.find_spec(PIPELINES)
    if package is None or package.submodule_search_locations is None:
        raise ImportError(f"no package {PIPELINES}")
    folders = sorted(
        folder
        for location in package.submodule_search_locations
        for folder in Path(location).iterdir()
        if (folder / f"{INTERFACE}.py").is_file() and not folder.name.startswith("_")
    )
    return [f"{PIPELINES}.{folder.name}.{INTERFACE}" for folder in folders]


@functools.cache
def declared() -> dict[str, Declared]:
    """Every declared model by name, sorted; a name declared twice is an error."""
    found: dict[str, Declared] = {}
    for name in interface_modules():
        module = importlib.import_module(name)
        models = getattr(module, "MODELS", None)
        if not isinstance(models, tuple) or not all(isinstance(m, Model) for m in models):
            raise TypeError(f"{name} declares no MODELS = (Model(...), ...)")
        source = name.replace(".", "/") + ".py"
        for model in models:
            if model.name in found:
                raise ValueError(f"{model.name!r} is declared in {found[model.name].source} and {source}")
            found[model.name] = Declared(model, source)
    return dict(sorted(found.items()))


def models() -> dict[str, Model]:
    """Every declared model by name."""
    return {name: d.model for name, d in declared().items()}


def model(name: str) -> Model:
    try:
        return declared()[name].model
    except KeyError:
        raise KeyError(f"no model {name!r} is declared in any {PIPELINES}.*.{INTERFACE}") from None
