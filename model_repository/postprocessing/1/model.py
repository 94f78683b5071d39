"""postprocessing: token ids in, text out (TensorRT-LLM's inflight_batcher_llm ``postprocessing`` names).

Stateless: it decodes the tokens of each response on their own. That is exact for this byte-level BPE
tokenizer when a response never ends inside a UTF-8 character, which the CPU ``tensorrt_llm`` model
guarantees by grouping tokens (see tritonfleet/pipelines/llm/detokenizer.py). A decoded piece that still ends
in an incomplete character is an error of the producer, and shows as U+FFFD rather than being dropped.

Cancellation (CPU ensemble): a request that comes with ``STOP_REQUEST_ID`` (tensorrt_llm adds it to every
4th response) and is already cancelled is a step Triton scheduled after the client cancelled the ensemble
request (Triton 24.10 cancels those, never the running tensorrt_llm step). It sends tensorrt_llm
TensorRT-LLM's stop request with that id, so the generation ends and frees its slot, and is decoded as usual
(nobody reads it). It must not answer an error: a step's error ends the ensemble request while its
tensorrt_llm step still streams, and Triton 24.10's ensemble scheduler then ignores that step's remaining
responses, final one included, so it never releases the ensemble request: unloading ``ensemble`` and
stopping the server wait for it until their timeout (fixed in Triton core by PR #466, 2026).

Called directly with tensors that do not fit together (lengths per beam, token ids of the vocabulary), a
request gets INVALID_ARG saying what is wrong; the other requests of a dynamic batch are decoded.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

from tritonfleet.errors import ClientError
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.python_backend import answer_each, check_required, numpy_type, parameters, required_inputs


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = parameters(config)
        tokenizer_dir = (
            Path(args["model_repository"]) / args["model_version"] / params.get("tokenizer_dir", "tokenizer")
        )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self.vocab = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self.skip_special = params.get("skip_special_tokens", "true") == "true"
        self.required = required_inputs(config)
        [output] = config["output"]
        self.dtype = pb_utils.triton_string_to_numpy(output["data_type"])

    def execute(self, requests):
        return answer_each(llm.POSTPROCESSING.name, requests, self._postprocess)

    def _postprocess(self, request):
        stop_ids = pb_utils.get_input_tensor_by_name(request, STOP_ID)
        if stop_ids is not None and request.is_cancelled():  # stop the generation, then answer as usual
            for stop_id in dict.fromkeys(stop_ids.as_numpy().reshape(-1)):
                _stop(_text(stop_id, STOP_ID))
        check_required(request, self.required)
        tokens = pb_utils.get_input_tensor_by_name(request, TOKENS).as_numpy()  # [batch, beams, n]
        lengths = pb_utils.get_input_tensor_by_name(request, LENGTHS).as_numpy()  # [batch, beams]
        if lengths.shape != tokens.shape[:2]:
            raise ClientError(
                f"{LENGTHS} has shape {list(lengths.shape)}, {TOKENS} {list(tokens.shape)}: "
                "one length per beam of each row"
            )
        if lengths.size and not (lengths.min() >= 0 and lengths.max() <= tokens.shape[2]):
            raise ClientError(f"{LENGTHS} must lie in [0, {tokens.shape[2]}] (the tokens of each beam)")
        rows = [
            row[:n].tolist()
            for row, n in zip(tokens.reshape(lengths.size, tokens.shape[2]), lengths.reshape(-1), strict=True)
        ]
        if any(not 0 <= t < self.vocab for row in rows for t in row):
            raise ClientError(f"{TOKENS} holds token ids outside [0, {self.vocab})")
        texts = [self.tokenizer.decode(row, skip_special_tokens=self.skip_special) for row in rows]
        # Shape [batch * beams] as TensorRT-LLM's postprocessing returns it: clients read text_output[0].
        output = np.array([t.encode("utf-8") for t in texts], dtype=self.dtype)
        return pb_utils.InferenceResponse([pb_utils.Tensor(llm.POST_OUTPUT.name, output)])


def _text(value, name):
    try:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError:
        raise ClientError(f"{name} is not valid UTF-8") from None


TOKENS, LENGTHS, STOP_ID = (
    llm.POST_TOKENS_BATCH.name,
    llm.POST_SEQUENCE_LENGTH.name,
    llm.POST_STOP_REQUEST_ID.name,
)
STOP_TYPES = {name: numpy_type(llm.TENSORRT_LLM.input(name)) for name in llm.STOP_REQUEST}


def _stop(request_id):
    """TensorRT-LLM's stop request (:data:`llm.STOP_REQUEST`) to tensorrt_llm for the sequence with this
    request id (BLS)."""
    try:
        inputs = [
            pb_utils.Tensor(n, np.full((1, 1), v, dtype=STOP_TYPES[n])) for n, v in llm.STOP_REQUEST.items()
        ]
        request = pb_utils.InferenceRequest(
            model_name=llm.TENSORRT_LLM.name, inputs=inputs, requested_output_names=[], request_id=request_id
        )
        for response in request.exec(decoupled=True):  # one empty final response: no tensors to load
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
    except Exception as exc:  # the client is gone: nobody reads this request's answer, so say it in the log
        pb_utils.Logger.log_warn(f"postprocessing: stopping {request_id} failed: {exc}")
