"""ensemble on CPU: the ensemble's three steps in one decoupled Python (BLS) model.

Same inputs and outputs as ``config.pbtxt`` (Triton's ensemble, kept for the GPU target). Each request runs
on its own thread: preprocessing (BLS: one implementation for both targets), then tensorrt_llm (BLS,
decoupled), each of whose responses is decoded (``decode_rows``, the postprocessing model's code) and counted
(as tensorrt_llm_counts does) here and sent on at once. A streamed token thus crosses one Python step, not
three. A piece is sent when the next arrives (one decode step later), so that the last one carries the
final flag: non-streaming requests get one response (HTTP /generate), and perf_analyzer's streaming
requests end.

Cancellation: Triton 24.10 passes a client's cancellation (gRPC cancel, SSE disconnect) to this model's
response sender, but a Python BLS request cannot be cancelled. So every generation gets a request id, and a
watcher thread that finds a cancelled client sends tensorrt_llm a request with ``stop`` true and that id:
tensorrtllm_backend v0.14.0's way to stop a request (model_instance_state.cc, handleStopRequest), which the
CPU tensorrt_llm model implements too. tensorrt_llm then ends the generation with an empty final response.
"""

import itertools
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository's tritonfleet package

from tokenizers import Tokenizer

from tritonfleet.llm.detokenizer import decode_rows

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
# The wiring of config.pbtxt's steps: ensemble input -> preprocessing input, preprocessing output ->
# tensorrt_llm input, ensemble input -> tensorrt_llm input.
PREPROCESSING = {"text_input": "QUERY", "max_tokens": "REQUEST_OUTPUT_LEN", "bad_words": "BAD_WORDS_DICT",
                 "stop_words": "STOP_WORDS_DICT", "end_id": "END_ID", "pad_id": "PAD_ID", "seed": "SEED",
                 "random_seed": "RANDOM_SEED", "min_tokens": "MIN_TOKENS", "min_length": "MIN_LENGTH",
                 "apply_chat_template": "APPLY_CHAT_TEMPLATE"}  # fmt: skip
FROM_PREPROCESSING = {"INPUT_ID": "input_ids", "REQUEST_INPUT_LEN": "input_lengths",
                      "REQUEST_OUTPUT_LEN": "request_output_len", "OUT_END_ID": "end_id",
                      "OUT_PAD_ID": "pad_id", "STOP_WORDS_IDS": "stop_words_list",
                      "BAD_WORDS_IDS": "bad_words_list", "OUT_SEED": "random_seed",
                      "OUT_MIN_TOKENS": "min_length"}  # fmt: skip
TENSORRT_LLM = {"top_k": "runtime_top_k", "top_p": "runtime_top_p", "temperature": "temperature",
                "length_penalty": "len_penalty", "repetition_penalty": "repetition_penalty",
                "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
                "return_log_probs": "return_log_probs", "exclude_input_in_output": "exclude_input_in_output",
                "beam_width": "beam_width", "stream": "streaming"}  # fmt: skip
LLM_OUTPUTS = ["output_ids", "sequence_length", "cum_log_probs", "output_log_probs"]


class StepError(Exception):
    """A step answered with an error: it becomes this request's error."""

    def __init__(self, error):
        super().__init__(error.message())
        self.error = error


def _inputs(request, mapping):
    """The request's inputs renamed by ``mapping``, copied: the request is released when execute returns."""
    tensors = []
    for src, dst in mapping.items():
        tensor = pb_utils.get_input_tensor_by_name(request, src)
        if tensor is not None:
            tensors.append(pb_utils.Tensor(dst, tensor.as_numpy().copy()))
    return tensors


def _flag(request, name, default):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return default if tensor is None else bool(tensor.as_numpy().reshape(-1)[0])


def _int_tensor(name, value):
    return pb_utils.Tensor(name, np.array([[value]], dtype=np.int32))


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        repository = Path(args["model_repository"]).parent
        tokenizer_dir = repository / params.get("tokenizer_dir", "postprocessing/1/tokenizer")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self.skip_special = params.get("skip_special_tokens", "true") == "true"
        self.poll_s = float(params.get("cancel_poll_ms", "20")) / 1000
        # Request ids of the generations, unique in this server's tensorrt_llm.
        self.prefix = f"{args['model_name']}-{args['model_instance_name']}-{os.getpid()}-"
        self.ids = itertools.count()
        self.live = {}  # tensorrt_llm request id -> the client's response sender
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def execute(self, requests):
        for request in requests:
            work = (
                _inputs(request, PREPROCESSING),
                _inputs(request, TENSORRT_LLM),
                {
                    "stream": _flag(request, "stream", False),
                    "exclude_input": _flag(request, "exclude_input_in_output", True),
                    "num_input": _flag(request, "return_num_input_tokens", False),
                    "num_output": _flag(request, "return_num_output_tokens", False),
                },
                request.get_response_sender(),
            )
            threading.Thread(target=self._run, args=work, daemon=True).start()
        return None

    def _run(self, pre_inputs, llm_inputs, flags, sender):
        """One request, start to end: whatever fails, the client gets a final response."""
        try:
            self._generate(pre_inputs, llm_inputs, flags, sender)
        except StepError as exc:
            sender.send(pb_utils.InferenceResponse(error=exc.error), flags=FINAL)
        except Exception as exc:
            error = pb_utils.TritonError(f"ensemble: {exc}", pb_utils.TritonError.INTERNAL)
            sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)

    def _generate(self, pre_inputs, llm_inputs, flags, sender):
        pre = pb_utils.InferenceRequest(
            model_name="preprocessing", inputs=pre_inputs, requested_output_names=list(FROM_PREPROCESSING)
        ).exec()
        if pre.has_error():
            raise StepError(pre.error())
        for tensor in pre.output_tensors():
            llm_inputs.append(pb_utils.Tensor(FROM_PREPROCESSING[tensor.name()], tensor.as_numpy()))
        num_input = int(pb_utils.get_output_tensor_by_name(pre, "REQUEST_INPUT_LEN").as_numpy().sum())
        # A non-streaming response repeats the prompt when exclude_input_in_output is false: the count is of
        # generated tokens only.
        generated = -num_input if not flags["stream"] and not flags["exclude_input"] else 0
        request_id = f"{self.prefix}{next(self.ids)}"
        llm = pb_utils.InferenceRequest(
            model_name="tensorrt_llm",
            inputs=llm_inputs,
            requested_output_names=LLM_OUTPUTS,
            request_id=request_id,
        )
        with self.lock:
            self.live[request_id] = sender
        # Each piece is sent when the next one arrives, so that the last goes with the final flag, as
        # Triton's ensemble sends it: perf_analyzer (genai-perf) waits for a final response with outputs.
        last = None
        try:
            for response in llm.exec(decoupled=True):
                if response.has_error():
                    raise StepError(response.error())
                if not response.output_tensors():  # tensorrt_llm's empty final response
                    continue
                generated += int(
                    pb_utils.get_output_tensor_by_name(response, "sequence_length").as_numpy().sum()
                )
                if last is not None:
                    sender.send(last)
                last = self._response(response, num_input, generated, flags)
        finally:
            with self.lock:
                self.live.pop(request_id, None)
        if last is None:
            sender.send(flags=FINAL)
        else:
            sender.send(last, flags=FINAL)

    def _response(self, response, num_input, generated, flags):
        """postprocessing's text and tensorrt_llm_counts' counts for one tensorrt_llm response."""
        ids = pb_utils.get_output_tensor_by_name(response, "output_ids").as_numpy()
        lengths = pb_utils.get_output_tensor_by_name(response, "sequence_length").as_numpy()
        texts = decode_rows(self.tokenizer, ids, lengths, self.skip_special)
        text = np.array([t.encode("utf-8") for t in texts], dtype=np.object_).reshape(1, -1)
        tensors = [pb_utils.Tensor("text_output", text)]
        for name in ("cum_log_probs", "output_log_probs"):
            tensors.append(pb_utils.get_output_tensor_by_name(response, name))
        if flags["num_input"]:
            tensors.append(_int_tensor("num_input_tokens", num_input))
        if flags["num_output"]:
            tensors.append(_int_tensor("num_output_tokens", generated))
        return pb_utils.InferenceResponse([t for t in tensors if t is not None])

    def _watch(self):
        """Stop the generation of every client that cancelled (tensorrt_llm's stop input)."""
        while not self.closing.wait(self.poll_s):
            # Under the lock: a sender leaves ``live`` before its final response, after which asking it
            # is_cancelled() would crash the server (its response factory is gone).
            with self.lock:
                cancelled = [rid for rid, sender in self.live.items() if sender.is_cancelled()]
                for request_id in cancelled:
                    del self.live[request_id]
            for request_id in cancelled:
                try:
                    self._stop(request_id)
                except Exception as exc:  # the watcher must go on for the other streams
                    pb_utils.Logger.log_warn(f"ensemble: stopping {request_id}: {exc}")

    def _stop(self, request_id):
        inputs = {"input_lengths": np.array([[1]], dtype=np.int32),
                  "request_output_len": np.array([[1]], dtype=np.int32),
                  "stop": np.array([[True]])}  # fmt: skip
        stop = pb_utils.InferenceRequest(
            model_name="tensorrt_llm",
            inputs=[pb_utils.Tensor(name, value) for name, value in inputs.items()],
            requested_output_names=[],
            request_id=request_id,
        )
        for response in stop.exec(decoupled=True):
            if response.has_error():
                raise RuntimeError(response.error().message())

    def finalize(self):
        self.closing.set()
        self.watcher.join(timeout=5)
