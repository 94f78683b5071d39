"""Requests and responses of the ``tabular`` pipeline's classifiers, the same for HTTP and gRPC.

Each model takes ``FEATURES`` (one row of numbers per batch entry) and returns ``LABEL`` (the class index)
and ``PROBABILITIES`` (one per class). Its feature names, in ``FEATURES`` order, and its class names, in
``LABEL`` order, are written once, in the model's config ``parameters`` (``feature_names``,
``class_names``, comma-separated); the helper reads them from the server's config::

    fleet.predict_tabular("wine_sklearn", [{"alcohol": 13.2, "malic_acid": 1.78, ...}])
    fleet.predict_tabular("breast_cancer_xgboost", np.zeros((4, 30)))
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonfleet.clients.call import Call, ConfiguredCall
from tritonfleet.pipelines.tabular import interface

MODELS = tuple(model.name for model in interface.MODELS)
INPUT = interface.FEATURES
LABEL = interface.LABEL
PROBABILITIES = interface.PROBABILITIES
FEATURE_NAMES = interface.FEATURE_NAMES  # config parameters
CLASS_NAMES = interface.CLASS_NAMES

Rows = Sequence[Mapping[str, Any]] | Mapping[str, Any] | Sequence[Sequence[float]] | np.ndarray


def split_names(text: str) -> tuple[str, ...]:
    """A comma-separated names parameter as a tuple, blanks around names dropped."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True)
class Schema:
    """A tabular model's interface as its config on the server declares it."""

    model: str
    features: tuple[str, ...]
    classes: tuple[str, ...]
    max_batch_size: int

    @classmethod
    def from_config(cls, model: str, config: Mapping[str, Any]) -> Schema:
        """From the model's config as JSON (``FleetClient.model_config``)."""
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        missing = [p for p in (FEATURE_NAMES, CLASS_NAMES) if not params.get(p)]
        if missing:
            raise ValueError(f"{model} is not a tabular model: its config has no {' or '.join(missing)}")
        return cls(
            model,
            split_names(params[FEATURE_NAMES]),
            split_names(params[CLASS_NAMES]),
            int(config.get("max_batch_size", 0)),
        )

    def matrix(self, rows: Rows) -> np.ndarray:
        """``rows`` as a [rows, features] array in the model's feature order, or a ValueError that says
        what is wrong. A row is a mapping of feature name to value (a pandas DataFrame's
        ``to_dict("records")``), or the values in feature order."""
        if isinstance(rows, Mapping):
            rows = [rows]
        if isinstance(rows, np.ndarray):
            if rows.ndim != 2:
                raise ValueError(
                    f"{self.model}: rows must be 2-D (rows x {len(self.features)} features), not shape "
                    f"{list(rows.shape)}; for one row pass [row]"
                )
            rows = list(rows)
        if not len(rows):
            raise ValueError(f"{self.model}: no rows to predict")
        return np.array(
            [
                self._from_mapping(i, row) if isinstance(row, Mapping) else self._from_values(i, row)
                for i, row in enumerate(rows)
            ],
            dtype=np.float64,
        )

    def _from_values(self, index: int, row: Any) -> list[float]:
        if isinstance(row, str | bytes) or not isinstance(row, Sequence | np.ndarray):
            raise ValueError(
                f"{self.model}: row {index} is {row!r}: give a row as a mapping of feature name to value or "
                f"as the {len(self.features)} values in feature order ({self._listing()})"
            )
        if len(row) != len(self.features):
            raise ValueError(
                f"{self.model} takes {len(self.features)} features per row ({self._listing()}); "
                f"row {index} has {len(row)}"
            )
        return [self._number(index, name, value) for name, value in zip(self.features, row, strict=True)]

    def _from_mapping(self, index: int, row: Mapping[str, Any]) -> list[float]:
        unknown = [name for name in row if name not in self.features]
        missing = [name for name in self.features if name not in row]
        problems = []
        if unknown:
            problems.append("unknown feature(s) " + ", ".join(self._suggest(n) for n in unknown))
        if missing:
            problems.append("missing feature(s) " + ", ".join(repr(n) for n in missing))
        if problems:
            raise ValueError(
                f"{self.model}: row {index} has {'; '.join(problems)} (it takes {self._listing()})"
            )
        return [self._number(index, name, row[name]) for name in self.features]

    def _number(self, index: int, name: str, value: Any) -> float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"{self.model}: row {index}, feature {name!r}: {value!r} is not a number"
            ) from None

    def _suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.features, n=1)
        return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)

    def _listing(self) -> str:
        return ", ".join(self.features)


@dataclass(frozen=True)
class Predictions:
    """One prediction per row: the class index, its name, and every class's probability."""

    labels: np.ndarray  # int64 [rows]
    probabilities: np.ndarray  # float32 [rows, classes]
    classes: tuple[str, ...]  # class names in label order (the config's class_names)

    @property
    def class_names(self) -> list[str]:
        return [self.classes[label] for label in self.labels]

    def __len__(self) -> int:
        return len(self.labels)


def predict_tabular(model: str, rows: Rows) -> ConfiguredCall:
    """The class and class probabilities of each row, sent as one batch: rows are mappings of feature name
    to value (all of the model's features, no others) or values in feature order (a rows x features array).
    """

    def make(config: Mapping[str, Any]) -> Call:
        schema = Schema.from_config(model, config)
        features = schema.matrix(rows)
        return Call(model, {INPUT: features}, lambda result: parse_response(result, schema.classes))

    return ConfiguredCall(model, make)


def parse_response(result: Any, classes: tuple[str, ...]) -> Predictions:
    return Predictions(
        labels=result.as_numpy(LABEL).reshape(-1),
        probabilities=result.as_numpy(PROBABILITIES),
        classes=classes,
    )


HELPERS = (predict_tabular,)  # FleetClient.<name>(...), AsyncFleetClient.<name>(...)
