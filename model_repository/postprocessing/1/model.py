"""postprocessing: token ids in, text out (TensorRT-LLM's inflight_batcher_llm ``postprocessing`` names).

Stateless: it decodes the tokens of each response on their own. That is exact for this byte-level BPE
tokenizer when a response never ends inside a UTF-8 character, which the CPU ``tensorrt_llm`` model
guarantees by grouping tokens (see tritonfleet/llm/detokenizer.py). A decoded piece that still ends in an
incomplete character is an error of the producer, and shows as U+FFFD rather than being dropped.

Cancellation (CPU ensemble): a request that comes with ``STOP_REQUEST_ID`` (tensorrt_llm adds it to every
4th response) and is already cancelled is a step Triton scheduled after the client cancelled the ensemble
request (Triton 24.10 cancels those, never the running tensorrt_llm step). It sends tensorrt_llm
TensorRT-LLM's stop request with that id, so the generation ends and frees its slot, and answers CANCELLED.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        tokenizer_dir = (
            Path(args["model_repository"]) / args["model_version"] / params.get("tokenizer_dir", "tokenizer")
        )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self.skip_special = params.get("skip_special_tokens", "true") == "true"

    def execute(self, requests):
        responses = []
        for request in requests:
            stop_id = pb_utils.get_input_tensor_by_name(request, "STOP_REQUEST_ID")
            if stop_id is not None and request.is_cancelled():
                _stop(stop_id.as_numpy().reshape(-1)[0].decode())
                error = pb_utils.TritonError("cancelled by the client", pb_utils.TritonError.CANCELLED)
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            tokens = pb_utils.get_input_tensor_by_name(request, "TOKENS_BATCH").as_numpy()
            lengths = pb_utils.get_input_tensor_by_name(request, "SEQUENCE_LENGTH").as_numpy()
            lengths = lengths.reshape(-1)
            tokens = tokens.reshape(lengths.size, tokens.shape[-1])  # [batch * beams, tokens]
            texts = [
                self.tokenizer.decode(row[:n].tolist(), skip_special_tokens=self.skip_special)
                for row, n in zip(tokens, lengths, strict=True)
            ]
            # Shape [batch * beams] as TensorRT-LLM's postprocessing returns it: clients read text_output[0].
            output = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", output)]))
        return responses


def _stop(request_id):
    """TensorRT-LLM's stop request to tensorrt_llm for the sequence with this request id (BLS)."""
    zero = np.zeros((1, 1), dtype=np.int32)
    inputs = [pb_utils.Tensor(name, zero) for name in ("input_ids", "input_lengths", "request_output_len")]
    inputs.append(pb_utils.Tensor("stop", np.ones((1, 1), dtype=np.bool_)))
    request = pb_utils.InferenceRequest(
        model_name="tensorrt_llm", inputs=inputs, requested_output_names=[], request_id=request_id
    )
    try:
        for response in request.exec(decoupled=True):  # one empty final response: no tensors to load
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
    except Exception as exc:  # the client is gone: nobody reads this request's answer, so say it in the log
        pb_utils.Logger.log_warn(f"postprocessing: stopping {request_id} failed: {exc}")
