"""The BentoML 1.4 peer: a service whose API is batchable (adaptive batching), one row per request.

    PEER_MODEL=model.onnx bentoml serve bentoml_service:Tabular --port 3000

``PEER_WORKERS`` (1), ``PEER_MAX_BATCH`` (32), ``PEER_MAX_LATENCY_MS`` (60000, BentoML's default: the bound
past which the dispatcher answers 503; the adaptive dispatcher itself decides how long to wait).
POST /predict ``{"features": [[f1, ..., fn]]}`` (a batch of one row) -> ``[{"label": 0, "probabilities":
[...]}]``.
"""

from __future__ import annotations

import os

import bentoml
from tabular_model import TabularModel


@bentoml.service(
    workers=int(os.environ.get("PEER_WORKERS", "1")),
    logging={"access": {"enabled": False}},
)
class Tabular:
    def __init__(self) -> None:
        self.model = TabularModel()

    @bentoml.api(
        batchable=True,
        max_batch_size=int(os.environ.get("PEER_MAX_BATCH", "32")),
        max_latency_ms=int(os.environ.get("PEER_MAX_LATENCY_MS", "60000")),
    )
    def predict(self, features: list[list[float]]) -> list[dict]:
        return self.model.predict(features)
