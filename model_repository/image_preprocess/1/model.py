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

from tritonfleet.pipelines.image_classifier import interface
from tritonfleet.pipelines.image_classifier.imaging import DEFAULT_MAX_PIXELS, ImageError, preprocess
from tritonfleet.python_backend import answer_each, parameters


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = parameters(config)
        self.max_pixels = int(params.get(interface.MAX_PIXELS, DEFAULT_MAX_PIXELS))
        [output] = config["output"]
        self.dtype = pb_utils.triton_string_to_numpy(output["data_type"])
        # Pillow releases the GIL while decoding and resizing, so threads use every core.
        self.pool = ThreadPoolExecutor(max_workers=int(params.get("decode_threads", 2)))

    def execute(self, requests):
        name = interface.IMAGE.name
        images = [pb_utils.get_input_tensor_by_name(r, name).as_numpy().reshape(-1) for r in requests]
        # Decode every image of every request in parallel; an error stays with its own request.
        futures = [[self.pool.submit(self._one, item) for item in batch] for batch in images]
        return answer_each(interface.IMAGE_PREPROCESS.name, futures, self._answer, prefix=f"{name}: ")

    def _answer(self, batch):
        """The response of a request whose images ``batch`` (futures) decode."""
        if not batch:
            raise ImageError("no image")
        pixels = np.stack([f.result() for f in batch]).astype(self.dtype, copy=False)
        return pb_utils.InferenceResponse([pb_utils.Tensor(interface.PIXEL_VALUES.name, pixels)])

    def _one(self, item) -> np.ndarray:
        data = item if isinstance(item, bytes) else bytes(item)
        return preprocess(data, max_pixels=self.max_pixels)

    def finalize(self):
        self.pool.shutdown(wait=False, cancel_futures=True)
