"""tensorrt_llm_bls: the non-streaming path (HTTP /generate, unary gRPC) over the same three models.

Calls the ensemble's steps: preprocessing, then the config's ``llm_model`` (decoupled, collecting its single
non-streaming response: tensorrt_llm_counts on GPU, which adds the token counts to tensorrt_llm's, and
tensorrt_llm itself on CPU, which returns them), then postprocessing, and answers once. Inputs and
outputs are the ensemble's; errors of any step come back as this request's error. Streaming requests are
rejected here: stream through the decoupled ``ensemble``. Each instance runs one request at a time
(``execute`` waits for it): the config's instance count is how many BLS requests are in flight together.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

PREPROCESSING = {"text_input": "QUERY", "max_tokens": "REQUEST_OUTPUT_LEN", "bad_words": "BAD_WORDS_DICT",
                 "stop_words": "STOP_WORDS_DICT", "end_id": "END_ID", "pad_id": "PAD_ID", "seed": "SEED",
                 "random_seed": "RANDOM_SEED", "min_tokens": "MIN_TOKENS", "min_length": "MIN_LENGTH",
                 "apply_chat_template": "APPLY_CHAT_TEMPLATE"}  # fmt: skip
FROM_PREPROCESSING = {
    "INPUT_ID": "input_ids",
    "REQUEST_INPUT_LEN": "input_lengths",
    "REQUEST_OUTPUT_LEN": "request_output_len",
    "OUT_END_ID": "end_id",
    "OUT_PAD_ID": "pad_id",
    "STOP_WORDS_IDS": "stop_words_list",
    "BAD_WORDS_IDS": "bad_words_list",
    "OUT_SEED": "random_seed",
    "OUT_MIN_TOKENS": "min_length",
}
TENSORRT_LLM = {"top_k": "runtime_top_k", "top_p": "runtime_top_p", "temperature": "temperature",
                "length_penalty": "len_penalty", "repetition_penalty": "repetition_penalty",
                "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
                "return_log_probs": "return_log_probs", "return_num_input_tokens": "return_num_input_tokens",
                "return_num_output_tokens": "return_num_output_tokens",
                "exclude_input_in_output": "exclude_input_in_output", "beam_width": "beam_width",
                "num_return_sequences": "num_return_sequences"}  # fmt: skip
PASSED_THROUGH = ("cum_log_probs", "output_log_probs", "num_input_tokens", "num_output_tokens")


class StepError(Exception):
    pass


def _inputs(request, mapping):
    tensors = []
    for src, dst in mapping.items():
        tensor = pb_utils.get_input_tensor_by_name(request, src)
        if tensor is not None:
            tensors.append(pb_utils.Tensor(dst, tensor.as_numpy()))
    return tensors


def _call(model, inputs, outputs, decoupled=False, request_id=""):
    request = pb_utils.InferenceRequest(
        model_name=model, inputs=inputs, requested_output_names=outputs, request_id=request_id
    )
    responses = request.exec(decoupled=True) if decoupled else [request.exec()]
    for response in responses:
        if response.has_error():
            raise StepError(f"{model}: {response.error().message()}")
        if response.output_tensors():
            return response
    raise StepError(f"{model} returned no output")


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        self.llm_model = params.get("llm_model", {}).get("string_value", "tensorrt_llm_counts")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._generate(request))
            except StepError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def _generate(self, request):
        stream = pb_utils.get_input_tensor_by_name(request, "stream")
        if stream is not None and stream.as_numpy().any():
            raise StepError("tensorrt_llm_bls does not stream: send stream=true to the 'ensemble' model")
        pre = _call("preprocessing", _inputs(request, PREPROCESSING), list(FROM_PREPROCESSING))
        llm_inputs = [
            pb_utils.Tensor(FROM_PREPROCESSING[t.name()], t.as_numpy()) for t in pre.output_tensors()
        ]
        llm_inputs += _inputs(request, TENSORRT_LLM)
        llm_inputs.append(pb_utils.Tensor("streaming", np.array([[False]])))
        llm = _call(
            self.llm_model,
            llm_inputs,
            ["output_ids", "sequence_length", *PASSED_THROUGH],
            decoupled=True,
            request_id=request.request_id(),  # a stop request with this id ends the generation early
        )
        ids = pb_utils.get_output_tensor_by_name(llm, "output_ids")
        lengths = pb_utils.get_output_tensor_by_name(llm, "sequence_length")
        post = _call(
            "postprocessing",
            [
                pb_utils.Tensor("TOKENS_BATCH", ids.as_numpy()),
                pb_utils.Tensor("SEQUENCE_LENGTH", lengths.as_numpy()),
            ],
            ["OUTPUT"],
        )
        outputs = [
            pb_utils.Tensor("text_output", pb_utils.get_output_tensor_by_name(post, "OUTPUT").as_numpy())
        ]
        outputs += [pb_utils.get_output_tensor_by_name(llm, name) for name in PASSED_THROUGH]
        return pb_utils.InferenceResponse([t for t in outputs if t is not None])
