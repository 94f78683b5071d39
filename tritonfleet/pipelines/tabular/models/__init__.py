"""The tabular pipeline's classifiers, one module each: ``models/<name>.py`` declares ``MODEL``, a
:class:`TabularModel` (its dataset, estimator, ONNX converter, feature and class names, a real row for the
probe). Its interface (:mod:`..interface`), its recipe and probe (:mod:`..pipeline`), ``fleet infer tabular
--model``, the build (``build/tabular/train.py``) and the benchmarks find it here: adding a classifier is
adding a module (and ``fleet render`` for its config).

The modules stay light (the interface imports them wherever configs are read): scikit-learn, XGBoost and the
converters are imported inside the functions that use them, at build and benchmark time.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TabularModel:
    """One classifier: rows of ``features`` (in ``FEATURES`` order) into ``classes`` (in ``LABEL`` order).

    ``dataset()`` returns scikit-learn's bundled dataset (``data``, ``target``, ``feature_names``,
    ``target_names``: the build checks the names against these), ``fit(x, y)`` the fitted estimator,
    ``convert(estimator, n_features, input_name)`` its ONNX graph (:mod:`..convert`), with the converter's
    ``label`` and ``probabilities`` outputs. ``probe`` is a real row of the dataset (values in feature
    order, or name -> value) and its true class: the probe's request."""

    name: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    dataset: Callable[[], Any]
    fit: Callable[[Any, Any], Any]
    convert: Callable[[Any, int, str], Any]
    probe: tuple[Sequence[float] | dict[str, float], str]
    doc: str
    source: str = ""  # the module that declares it, relative to the project root (set by discover)


@functools.cache
def discover() -> dict[str, TabularModel]:
    """Every classifier by name, in module order; a module without ``MODEL``, or two of one name, is an
    error."""
    found: dict[str, TabularModel] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        model = getattr(module, "MODEL", None)
        if not isinstance(model, TabularModel):
            raise TypeError(f"{module.__name__} declares no MODEL = TabularModel(...)")
        if model.name in found:
            raise ValueError(f"two tabular modules declare the model {model.name!r}")
        source = module.__name__.replace(".", "/") + ".py"
        found[model.name] = TabularModel(**{**model.__dict__, "source": source})
    return found


def get(name: str) -> TabularModel:
    try:
        return discover()[name]
    except KeyError:
        raise KeyError(f"no tabular model {name!r}; there are {sorted(discover())}") from None
