"""image_preprocess: encoded image bytes -> EfficientNet-Lite0 input tensor.

Each request carries one or more encoded images (JPEG, PNG, WebP, ...). A request with a bad image
(empty, corrupt, not an image, over ``max_pixels``) gets an INVALID_ARG error that says what is wrong; the
other requests of the same dynamic batch are answered normally. The preprocessing itself lives in
``tritonfleet.pipelines.image_classifier.imaging`` so the benchmark floor and the build checks run the very
same code.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import triton_python_backend_utils as pb_utils

from tritonfleet.pipelines.image_classifier.imaging import DEFAULT_MAX_PIXELS, ImageError, preprocess


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_pixels = int(params.get("max_pixels", DEFAULT_MAX_PIXELS))
        [output] = config["output"]
        self.dtype = pb_utils.triton_string_to_numpy(output["data_type"])
        # Pillow releases the GIL while decoding and resizing, so threads use every core.
        self.pool = ThreadPoolExecutor(max_workers=int(params.get("decode_threads", 2)))

    def execute(self, requests):
        images = [pb_utils.get_input_tensor_by_name(r, "IMAGE").as_numpy().reshape(-1) for r in requests]
        # Decode every image of every request in parallel; an error stays with its own request.
        futures = [[self.pool.submit(self._one, item) for item in batch] for batch in images]
        responses = []
        for batch in futures:
            try:
                if not batch:
                    raise ImageError("no image")
                pixels = np.stack([f.result() for f in batch]).astype(self.dtype, copy=False)
            except ImageError as exc:  # the client's: not an image, truncated, too large
                error = pb_utils.TritonError(f"IMAGE: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            except Exception as exc:  # a fault of ours: fail this request only
                error = pb_utils.TritonError(f"image_preprocess: internal error: {type(exc).__name__}: {exc}")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PIXEL_VALUES", pixels)]))
        return responses

    def _one(self, item) -> np.ndarray:
        data = item if isinstance(item, bytes) else bytes(item)
        return preprocess(data, max_pixels=self.max_pixels)

    def finalize(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
