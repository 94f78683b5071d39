"""tensorrt_llm_passthrough: tensorrt_llm plus a tensor carried past it (rag's sources, on GPU).

rag's ensemble must hand its sources (known before generation) to the client beside the streamed text, but
Triton refuses an ensemble whose outputs come from both sides of a decoupled step. So they travel through
the decoupled step: the CPU ``tensorrt_llm`` takes ``passthrough_in`` and returns it as ``passthrough_out``
itself; TensorRT-LLM's C++ backend has no such tensors, so on GPU this step sits where tensorrt_llm was.

It forwards each request to tensorrt_llm (BLS, decoupled) without ``passthrough_in``, and each response back,
adding ``passthrough_out`` to each row's first response. Each request is forwarded on its own thread, so
concurrent streams reach tensorrt_llm's in-flight batching together. A request of batch B is forwarded
whole; tensorrt_llm's responses are each one row's (``batch_index``, passed on, says which when B > 1).
Token counts come from tensorrt_llm itself (TensorRT-LLM 1.2.1's ``return_num_*_tokens``).
"""

import json
import threading

import triton_python_backend_utils as pb_utils

from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.llm.errors import is_fault
from tritonfleet.python_backend import FINAL, check_required, required_inputs, send_each

PASSTHROUGH = (llm.PASSTHROUGH_IN.name, llm.PASSTHROUGH_OUT.name)  # not the backend's: added here


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.forwarded = [t["name"] for t in config["input"] if t["name"] not in PASSTHROUGH]
        self.outputs = [t["name"] for t in config["output"] if t["name"] not in PASSTHROUGH]
        self.required = required_inputs(config)

    def execute(self, requests):
        send_each(llm.TENSORRT_LLM_PASSTHROUGH.name, requests, self._start)

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
        batch = len(pb_utils.get_input_tensor_by_name(request, llm.INPUT_LENGTHS.name).as_numpy())
        passthrough = pb_utils.get_input_tensor_by_name(request, PASSTHROUGH[0])
        passed = None if passthrough is None else list(passthrough.as_numpy().reshape(batch, -1).copy())
        threading.Thread(target=self._forward, args=(llm_request, sender, passed), daemon=True).start()

    def _forward(self, llm_request, sender, passthrough):
        """Send tensorrt_llm's responses on, each row's first with its pass-through tensor (None: not given),
        then the final flag."""
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
                if passthrough is not None and passthrough[b] is not None:
                    tensors.append(pb_utils.Tensor(PASSTHROUGH[1], passthrough[b].reshape(1, -1)))
                    passthrough[b] = None
                sender.send(pb_utils.InferenceResponse(tensors))
            sender.send(flags=FINAL)
        except Exception as exc:  # the stream must end, whatever failed
            error = pb_utils.TritonError(
                f"{llm.TENSORRT_LLM_PASSTHROUGH.name}: {exc}", pb_utils.TritonError.INTERNAL
            )
            sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
