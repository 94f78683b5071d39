"""tensorrt_llm_bls: the non-streaming path (HTTP /generate, unary gRPC) over the same three models.

Calls the ensemble's steps: preprocessing, then the config's ``llm_model`` (decoupled, collecting its single
non-streaming response: tensorrt_llm_counts on GPU, which adds the token counts to tensorrt_llm's, and
tensorrt_llm itself on CPU, which returns them), then postprocessing, and answers once. Inputs and
outputs are the ensemble's; errors of any step come back as this request's error. Streaming requests are
rejected here: stream through the decoupled ``ensemble``. Each instance runs one request at a time
(``execute`` waits for it): the config's instance count is how many BLS requests are in flight together.

A request of batch B goes through each step whole: its rows generate together (one sequence each), and the
one response holds them in order: ``text_output`` ``[B]``, ``output_log_probs`` padded with zeros to the
longest row (``num_output_tokens`` gives each row's length); an optional output is in it when every row has
it. A step's error is this request's, named after the step: INVALID_ARG unless it reports a fault of the
server (BLS gives the caller no error codes: ``tritonfleet.pipelines.llm.errors``).
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from tritonfleet.pipelines.llm.errors import fault, is_fault

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
                "num_return_sequences": "num_return_sequences",
                # guided decoding (tensorrtllm_backend v0.19's names): CPU config only
                "guided_decoding_guide_type": "guided_decoding_guide_type",
                "guided_decoding_guide": "guided_decoding_guide"}  # fmt: skip
PASSED_THROUGH = ("cum_log_probs", "output_log_probs", "num_input_tokens", "num_output_tokens")


class StepError(Exception):
    """A step's error: the request's error, with the step's name and error code."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def _inputs(request, mapping):
    tensors = []
    for src, dst in mapping.items():
        tensor = pb_utils.get_input_tensor_by_name(request, src)
        if tensor is not None:
            tensors.append(pb_utils.Tensor(dst, tensor.as_numpy()))
    return tensors


def _responses(model, inputs, outputs, decoupled=False, request_id=""):
    """The responses of one BLS call that carry tensors; a step's error raises :class:`StepError`."""
    request = pb_utils.InferenceRequest(
        model_name=model, inputs=inputs, requested_output_names=outputs, request_id=request_id
    )
    found = []
    for response in request.exec(decoupled=True) if decoupled else [request.exec()]:
        if response.has_error():
            message = response.error().message()
            code = pb_utils.TritonError.INTERNAL if is_fault(message) else pb_utils.TritonError.INVALID_ARG
            named = (
                message if message.startswith(f"{model}:") else f"{model}: {message}"
            )  # steps name themselves
            raise StepError(named, code)
        if response.output_tensors():
            found.append({t.name(): t.as_numpy() for t in response.output_tensors()})
    if not found:
        raise StepError(f"{model} returned no output", pb_utils.TritonError.INTERNAL)
    return found


def _padded(arrays):
    """Rows ``[1, beams, n_i]`` stacked into ``[rows, beams, max n_i]``, padded with zeros."""
    width = max(a.shape[-1] for a in arrays)
    return np.concatenate([np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, width - a.shape[-1])]) for a in arrays])


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.llm_model = (
            config.get("parameters", {}).get("llm_model", {}).get("string_value", "tensorrt_llm_counts")
        )
        self.dtypes = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["input"]}
        self.required = [t["name"] for t in config["input"] if not t.get("optional")]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._generate(request))
            except StepError as exc:
                error = pb_utils.TritonError(str(exc), exc.code)
                responses.append(pb_utils.InferenceResponse(error=error))
            except Exception as exc:  # a fault of ours: fail this request only
                error = pb_utils.TritonError(fault("tensorrt_llm_bls", exc))
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def _generate(self, request):
        # Triton 24.10 checks how many inputs a request has, not which: a required one may be missing.
        missing = [n for n in self.required if pb_utils.get_input_tensor_by_name(request, n) is None]
        if missing:
            raise StepError(f"missing required input(s) {missing}", pb_utils.TritonError.INVALID_ARG)
        stream = pb_utils.get_input_tensor_by_name(request, "stream")
        if stream is not None and stream.as_numpy().any():
            raise StepError(
                "tensorrt_llm_bls does not stream: send stream=true to the 'ensemble' model",
                pb_utils.TritonError.INVALID_ARG,
            )
        batch = len(pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy())
        [pre] = _responses("preprocessing", _inputs(request, PREPROCESSING), list(FROM_PREPROCESSING))
        llm_inputs = [pb_utils.Tensor(FROM_PREPROCESSING[name], value) for name, value in pre.items()]
        llm_inputs += _inputs(request, TENSORRT_LLM)
        llm_inputs.append(pb_utils.Tensor("streaming", np.zeros((batch, 1), dtype=self.dtypes["stream"])))
        rows = [None] * batch
        for response in _responses(
            self.llm_model,
            llm_inputs,
            ["output_ids", "sequence_length", "batch_index", *PASSED_THROUGH],
            decoupled=True,
            request_id=request.request_id(),  # a stop request with this id ends the generation early
        ):
            index = response.get("batch_index")
            rows[0 if index is None else int(index.reshape(-1)[0])] = response  # a row's one response
        if None in rows:
            missing = [i for i, r in enumerate(rows) if r is None]
            raise StepError(
                f"{self.llm_model} returned no output for rows {missing}", pb_utils.TritonError.INTERNAL
            )
        tokens = _padded([r["output_ids"] for r in rows])
        lengths = np.concatenate([r["sequence_length"] for r in rows])
        [post] = _responses(
            "postprocessing",
            [pb_utils.Tensor("TOKENS_BATCH", tokens), pb_utils.Tensor("SEQUENCE_LENGTH", lengths)],
            ["OUTPUT"],
        )
        outputs = [pb_utils.Tensor("text_output", post["OUTPUT"])]
        for name in PASSED_THROUGH:  # in the response when every row has it
            if all(name in r for r in rows):
                values = [r[name] for r in rows]
                outputs.append(
                    pb_utils.Tensor(
                        name, _padded(values) if name == "output_log_probs" else np.concatenate(values)
                    )
                )
        return pb_utils.InferenceResponse(outputs)
