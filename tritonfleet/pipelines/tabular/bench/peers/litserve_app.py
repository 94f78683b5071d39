"""The LitServe peer: batching on (``max_batch_size``, ``batch_timeout``), one row per request.

    PEER_MODEL=model.onnx PEER_PORT=8000 python litserve_app.py

``PEER_MAX_BATCH`` (32), ``PEER_BATCH_TIMEOUT_MS`` (1), ``PEER_WORKERS`` (inference workers, 1),
``PEER_API_SERVERS`` (uvicorn processes, 1), ``PEER_FAST_QUEUE`` (ZeroMQ between them, 0). POST /predict
``{"features": [f1, ..., fn]}`` -> ``{"label": 0, "probabilities": [p0, ...]}``.
"""

from __future__ import annotations

import os
from typing import Any

import litserve as ls
from tabular_model import TabularModel


class TabularAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.model = TabularModel()

    def decode_request(self, request: dict) -> list[float]:
        return request["features"]

    def batch(self, inputs: list[list[float]]) -> list[list[float]]:
        return inputs

    def predict(self, rows: list[list[float]]) -> list[dict[str, Any]]:
        return self.model.predict(rows)

    def unbatch(self, output: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return output

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return output


if __name__ == "__main__":
    api = TabularAPI(
        max_batch_size=int(os.environ.get("PEER_MAX_BATCH", "32")),
        batch_timeout=float(os.environ.get("PEER_BATCH_TIMEOUT_MS", "1")) / 1000,
    )
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=int(os.environ.get("PEER_WORKERS", "1")),
        fast_queue=os.environ.get("PEER_FAST_QUEUE", "0") == "1",
    )
    server.run(
        host="127.0.0.1",
        port=int(os.environ["PEER_PORT"]),
        num_api_servers=int(os.environ.get("PEER_API_SERVERS", "1")),
        log_level="warning",
        generate_client_file=False,
    )
