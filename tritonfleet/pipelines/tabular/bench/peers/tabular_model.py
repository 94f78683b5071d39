"""What every peer app of ``fleet bench tabular`` runs: the served ONNX file in onnxruntime, a batch of rows
in, each row's label and class probabilities out. The tensor names come from the ONNX file.

Configured by the environment: ``PEER_MODEL`` (the .onnx path), ``PEER_THREADS`` (intra-op threads, 1).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort


class TabularModel:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("PEER_THREADS", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.environ["PEER_MODEL"], options, providers=["CPUExecutionProvider"]
        )
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]  # label, probabilities

    def predict(self, rows: Any) -> list[dict[str, Any]]:
        """One ``{"label", "probabilities"}`` per row of ``rows`` (rows x features)."""
        labels, probabilities = self.session.run(self.outputs, {self.input: np.asarray(rows, np.float32)})
        return [
            {"label": label, "probabilities": probs}
            for label, probs in zip(labels.reshape(-1).tolist(), probabilities.tolist(), strict=True)
        ]
