"""A Python-based Triton backend that serves ``platform: "onnxruntime_onnx"`` models with onnxruntime.

The bundled CPU server has no native onnxruntime backend. Triton falls back to
``<backends>/onnxruntime/model.py`` when ``libtriton_onnxruntime.so`` is absent, so ONNX configs written
for the native backend load unchanged. It honours the native backend's thread parameters
(``intra_op_thread_count``, ``inter_op_thread_count``) and ``default_model_filename``.

With dynamic batching, Triton hands ``execute`` several requests: their inputs are concatenated along
the batch axis, run once, and the outputs split back per request.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        filename = config.get("default_model_filename") or "model.onnx"
        path = Path(args["model_repository"]) / args["model_version"] / filename

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", 0))
        options.inter_op_num_threads = int(params.get("inter_op_thread_count", 0))
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        self.input_names = [t["name"] for t in config["input"]]
        self.output_names = [t["name"] for t in config["output"]]
        self.batched = config.get("max_batch_size", 0) > 0

    def execute(self, requests):
        inputs = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names}
            for r in requests
        ]
        try:
            if self.batched:
                sizes = [len(x[self.input_names[0]]) for x in inputs]
                feed = {n: np.concatenate([x[n] for x in inputs]) for n in self.input_names}
                outputs = self.session.run(self.output_names, feed)
                bounds = np.cumsum(sizes)[:-1]
                per_request = zip(*(np.split(o, bounds) for o in outputs), strict=True)
            else:
                per_request = (self.session.run(self.output_names, x) for x in inputs)
            names = self.output_names
            return [
                pb_utils.InferenceResponse([pb_utils.Tensor(n, o) for n, o in zip(names, outs, strict=True)])
                for outs in per_request
            ]
        except Exception as exc:  # onnxruntime errors: fail these requests, keep the model serving
            error = pb_utils.TritonError(f"onnxruntime: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
