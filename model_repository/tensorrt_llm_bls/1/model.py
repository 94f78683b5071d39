"""tensorrt_llm_bls: the non-streaming path (HTTP /generate, unary gRPC) over the same three models.

Calls the ensemble's steps: preprocessing, then the config's ``llm_model`` (tensorrt_llm, decoupled,
collecting its single non-streaming response with the token counts), then postprocessing, and answers
once. Inputs and outputs are the ensemble's; errors of any step come back as this request's error.
Streaming requests are rejected here: stream through the decoupled ``ensemble``. Each instance runs one
request at a time (``execute`` waits for it): the config's instance count is how many BLS requests are in
flight together.

A request of batch B goes through each step whole: its rows generate together (one sequence each), and the
one response holds them in order: ``text_output`` ``[B]``, ``output_log_probs`` padded with zeros to the
longest row (``num_output_tokens`` gives each row's length); an optional output is in it when every row has
it. A step's error is this request's, named after the step: INVALID_ARG unless it reports a fault of the
server (BLS gives the caller no error codes: ``tritonfleet.pipelines.llm.errors``).
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from tritonfleet.errors import ClientError
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.llm.errors import is_fault
from tritonfleet.python_backend import Passed, answer_each, check_required, required_inputs

# The chain's maps, the ensemble's own (tritonfleet/pipelines/llm/interface.py); streaming is this model's.
TO_LLM = {name: to for name, to in llm.TO_LLM.items() if name != llm.STREAM.name}
# The LLM step's outputs: the tokens and lengths postprocessing decodes, then those passed to the client.
TO_POSTPROCESSING = {out: to for out, to in llm.TO_POSTPROCESSING.items() if out != llm.STOP_REQUEST_ID.name}
PASSED_THROUGH = tuple(t.name for t in llm.TENSORRT_LLM_BLS.outputs if t.name in llm.FROM_LLM)
[(POST_OUTPUT, TEXT_OUTPUT)] = llm.FROM_POSTPROCESSING.items()


class StepFailed(ClientError):
    """A step refused the request: the request's error (INVALID_ARG), named after the step."""


def _inputs(request, mapping):
    tensors = []
    for src, dst in mapping.items():
        tensor = pb_utils.get_input_tensor_by_name(request, src)
        if tensor is not None:
            tensors.append(pb_utils.Tensor(dst, tensor.as_numpy()))
    return tensors


def _responses(model, inputs, outputs, decoupled=False, request_id="", parameters=None):
    """The responses of one BLS call that carry tensors. A step's error is raised named after the step:
    :class:`StepFailed` (the client's mistake) or :class:`Passed` (a fault), told apart by Triton's message
    (BLS keeps no error code: ``tritonfleet.pipelines.llm.errors``). ``parameters``: the caller's request
    parameters, passed on (``priority_level`` reaches the CPU scheduler)."""
    request = pb_utils.InferenceRequest(
        model_name=model,
        inputs=inputs,
        requested_output_names=outputs,
        request_id=request_id,
        parameters=parameters or {},
    )
    found = []
    for response in request.exec(decoupled=True) if decoupled else [request.exec()]:
        if response.has_error():
            message = response.error().message()
            named = (
                message if message.startswith(f"{model}:") else f"{model}: {message}"
            )  # steps name themselves
            raise Passed(named) if is_fault(message) else StepFailed(named)
        if response.output_tensors():
            found.append({t.name(): t.as_numpy() for t in response.output_tensors()})
    if not found:
        raise Passed(f"{model} returned no output")
    return found


def _padded(arrays):
    """Rows ``[1, beams, n_i]`` stacked into ``[rows, beams, max n_i]``, padded with zeros."""
    width = max(a.shape[-1] for a in arrays)
    return np.concatenate([np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, width - a.shape[-1])]) for a in arrays])


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        default = llm.TENSORRT_LLM.name
        self.llm_model = config.get("parameters", {}).get("llm_model", {}).get("string_value", default)
        self.dtypes = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["input"]}
        self.required = required_inputs(config)

    def execute(self, requests):
        return answer_each(llm.TENSORRT_LLM_BLS.name, requests, self._generate)

    def _generate(self, request):
        check_required(request, self.required)
        stream = pb_utils.get_input_tensor_by_name(request, llm.STREAM.name)
        if stream is not None and stream.as_numpy().any():
            raise ClientError(
                f"{llm.TENSORRT_LLM_BLS.name} does not stream: send {llm.STREAM.name}=true to the "
                f"'{llm.ENSEMBLE.name}' model"
            )
        batch = len(pb_utils.get_input_tensor_by_name(request, llm.TEXT_INPUT.name).as_numpy())
        [pre] = _responses(
            llm.PREPROCESSING.name, _inputs(request, llm.PREPROCESS), list(llm.FROM_PREPROCESSING)
        )
        llm_inputs = [pb_utils.Tensor(llm.FROM_PREPROCESSING[name], value) for name, value in pre.items()]
        llm_inputs += _inputs(request, TO_LLM)
        streaming = np.zeros((batch, 1), dtype=self.dtypes[llm.STREAM.name])
        llm_inputs.append(pb_utils.Tensor(llm.STREAMING.name, streaming))
        rows = [None] * batch
        for response in _responses(
            self.llm_model,
            llm_inputs,
            [*TO_POSTPROCESSING, llm.BATCH_INDEX.name, *PASSED_THROUGH],
            decoupled=True,
            request_id=request.request_id(),  # a stop request with this id ends the generation early
            parameters=json.loads(request.parameters() or "{}"),
        ):
            index = response.get(llm.BATCH_INDEX.name)
            rows[0 if index is None else int(index.reshape(-1)[0])] = response  # a row's one response
        if None in rows:
            missing = [i for i, r in enumerate(rows) if r is None]
            raise Passed(f"{self.llm_model} returned no output for rows {missing}")
        decoded = {
            to: _padded([r[out] for r in rows])
            if out == llm.OUTPUT_IDS.name
            else np.concatenate([r[out] for r in rows])
            for out, to in TO_POSTPROCESSING.items()
        }
        [post] = _responses(
            llm.POSTPROCESSING.name, [pb_utils.Tensor(n, v) for n, v in decoded.items()], [POST_OUTPUT]
        )
        outputs = [pb_utils.Tensor(TEXT_OUTPUT, post[POST_OUTPUT])]
        for name in PASSED_THROUGH:  # in the response when every row has it
            if all(name in r for r in rows):
                values = [r[name] for r in rows]
                outputs.append(
                    pb_utils.Tensor(
                        name, _padded(values) if name == llm.OUTPUT_LOG_PROBS.name else np.concatenate(values)
                    )
                )
        return pb_utils.InferenceResponse(outputs)
