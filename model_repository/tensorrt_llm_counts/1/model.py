"""tensorrt_llm_counts: tensorrt_llm plus the token counts that tensorrtllm_backend v0.14.0 lacks.

TensorRT-LLM 1.x's ``tensorrt_llm`` returns ``num_input_tokens`` / ``num_output_tokens`` when asked
(``return_num_input_tokens`` / ``return_num_output_tokens``); the pinned v0.14.0 backend has none of these
tensors. Nor can the ensemble join them in from other steps: Triton (24.10) rejects an ensemble whose outputs,
or whose step inputs, come from both sides of a decoupled step, so neither preprocessing's prompt length nor
the client's flags can meet tensorrt_llm's streamed responses in postprocessing or in the ensemble's outputs.

So this decoupled step sits where tensorrt_llm was: it forwards each request to tensorrt_llm (BLS,
decoupled) and each response back, adding when asked ``num_input_tokens`` (``input_lengths``: the prompt
length preprocessing counted) and ``num_output_tokens`` (tokens generated so far: the running sum of
``sequence_length``, less the prompt when a non-streaming response echoes it). Each request is forwarded on
its own thread, so concurrent streams reach tensorrt_llm's in-flight batching together. A request of batch B
is forwarded whole; tensorrt_llm's responses are each one row's (``batch_index``, passed on, says which when
B > 1), and each row is counted on its own. ``passthrough_in`` is not forwarded (the backend has no such
input): it comes back as ``passthrough_out`` on each row's first response (rag's sources).
"""

import json
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.llm.errors import is_fault
from tritonfleet.python_backend import FINAL, check_required, required_inputs, send_each

COUNT_FLAGS = (llm.RETURN_NUM_INPUT_TOKENS.name, llm.RETURN_NUM_OUTPUT_TOKENS.name)
COUNTS = (llm.NUM_INPUT_TOKENS.name, llm.NUM_OUTPUT_TOKENS.name)
# Not the backend's: held back, added on the first response.
PASSTHROUGH = (llm.PASSTHROUGH_IN.name, llm.PASSTHROUGH_OUT.name)


def _column(request, name, default):
    """One value per row of the request (``None`` when the input is absent)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    value = tensor.as_numpy()
    return [row[0].item() if row.size else default for row in value.reshape(len(value), -1)]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        held_back = (*COUNT_FLAGS, *PASSTHROUGH)
        self.forwarded = [t["name"] for t in config["input"] if t["name"] not in held_back]
        self.outputs = [t["name"] for t in config["output"] if t["name"] not in (*COUNTS, *held_back)]
        self.dtypes = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["output"]}
        self.required = required_inputs(config)

    def execute(self, requests):
        send_each(llm.TENSORRT_LLM_COUNTS.name, requests, self._start)

    def _start(self, request, sender):
        """Forward ``request`` to tensorrt_llm on a thread of its own, which sends the responses."""
        check_required(request, self.required)
        inputs = []
        for name in self.forwarded:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:  # copied: the request is released when execute returns
                inputs.append(pb_utils.Tensor(name, tensor.as_numpy().copy()))
        llm_request = pb_utils.InferenceRequest(  # its id, so that a stop request reaches tensorrt_llm
            model_name=llm.TENSORRT_LLM.name,
            inputs=inputs,
            requested_output_names=self.outputs,
            request_id=request.request_id(),
        )
        num_input = _column(request, llm.INPUT_LENGTHS.name, 0)
        batch = len(num_input)
        streaming = _column(request, llm.STREAMING.name, False) or [False] * batch
        exclude = _column(request, llm.EXCLUDE_INPUT_IN_OUTPUT.name, True) or [True] * batch
        asked_input = _column(request, COUNT_FLAGS[0], False) or [False] * batch
        asked_output = _column(request, COUNT_FLAGS[1], False) or [False] * batch
        # A non-streaming response repeats the prompt when exclude_input_in_output is false (default true,
        # as tensorrt_llm's exclude_input_in_output parameter): the count is of generated tokens only.
        rows = [
            (
                n if asked_input[b] else None,
                -n if not streaming[b] and not exclude[b] else 0,
                asked_output[b],
            )
            for b, n in enumerate(num_input)
        ]
        passthrough = pb_utils.get_input_tensor_by_name(request, PASSTHROUGH[0])
        passed = None if passthrough is None else list(passthrough.as_numpy().reshape(batch, -1).copy())
        threading.Thread(target=self._forward, args=(llm_request, sender, rows, passed), daemon=True).start()

    def _forward(self, llm_request, sender, rows, passthrough):
        """Send tensorrt_llm's responses on, with the counts asked for, then the final flag. ``rows`` holds
        per row: the prompt length (None: not asked), the tokens generated so far (minus the prompt length
        when the responses repeat it) and whether that count is asked. ``passthrough`` (None: not given) is
        each row's pass-through tensor, added to that row's first response."""
        generated = [start for _, start, _ in rows]
        try:
            for response in llm_request.exec(decoupled=True):
                if response.has_error():  # its code is lost through BLS: tell faults by their message
                    message = response.error().message()
                    code = (
                        pb_utils.TritonError.INTERNAL
                        if is_fault(message)
                        else pb_utils.TritonError.INVALID_ARG
                    )
                    sender.send(
                        pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code)), flags=FINAL
                    )
                    return
                tensors = response.output_tensors()
                if not tensors:  # tensorrt_llm's empty final response
                    continue
                index = pb_utils.get_output_tensor_by_name(response, llm.BATCH_INDEX.name)
                b = 0 if index is None else int(index.as_numpy().reshape(-1)[0])
                generated[b] += int(
                    pb_utils.get_output_tensor_by_name(response, llm.SEQUENCE_LENGTH.name).as_numpy().sum()
                )
                num_input, _, count_output = rows[b]
                if num_input is not None:
                    tensors.append(self._int_tensor(COUNTS[0], num_input))
                if count_output:
                    tensors.append(self._int_tensor(COUNTS[1], generated[b]))
                if passthrough is not None and passthrough[b] is not None:
                    tensors.append(pb_utils.Tensor(PASSTHROUGH[1], passthrough[b].reshape(1, -1)))
                    passthrough[b] = None
                sender.send(pb_utils.InferenceResponse(tensors))
            sender.send(flags=FINAL)
        except Exception as exc:  # the stream must end, whatever failed
            error = pb_utils.TritonError(
                f"{llm.TENSORRT_LLM_COUNTS.name}: {exc}", pb_utils.TritonError.INTERNAL
            )
            sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)

    def _int_tensor(self, name, value):
        return pb_utils.Tensor(name, np.array([[value]], dtype=self.dtypes[name]))
