"""The engine path's client interface over TensorRT-LLM's LLM-API Triton model (``llmapi_adapter`` and, not
decoupled, ``tensorrt_llm_bls`` of the llmapi repository variant: ``tritonfleet/pipelines/llm/llmapi.py``).

Each row of a request ``[B, 1]`` becomes one request to the LLM-API model (``llm_model``, unbatched) with
the row's values under that model's names (:data:`llmapi.TO_LLMAPI`), sent on a thread of its own so that
rows and requests reach the LLM's in-flight batching together. Its responses carry the whole text so far;
this model sends the new part (``text_output`` as the engine path streams it), tagged with ``batch_index``
when B > 1, the token counts when asked (the checkpoint's tokenizer: the prompt as sent, the output text
re-encoded, since the LLM-API model returns no ids) and the pass-through tensor on each row's first response.
Not decoupled, it answers once with every row's whole text.

``apply_chat_template`` wraps the text as the user's message with the checkpoint's template, as
preprocessing does on the engine path. top_p 0 is not sent (no nucleus), and with top_k 0 (the engine path's
greedy) top_k 1 is.
Inputs the LLM-API model cannot honour (:data:`llmapi.UNSUPPORTED`) are refused unless neutral. A row's
request id is the client's (or a fresh one) with ``-<row>``; when the client cancels, the row's generation
is ended with the LLM-API model's stop request for that id.
"""

import json
import threading
import uuid
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

from tritonfleet.errors import ClientError
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.llm import llmapi
from tritonfleet.pipelines.llm.errors import is_fault
from tritonfleet.python_backend import (
    FINAL,
    Passed,
    answer_each,
    check_required,
    error,
    parameters,
    required_inputs,
    send_each,
)

TEXT = llmapi.LLMAPI_TEXT_OUTPUT.name


class Row:
    """One prompt of a request: the LLM-API request's inputs and what the client's response needs."""

    def __init__(self, index, inputs, prompt_tokens, passthrough):
        self.index, self.inputs = index, inputs
        self.prompt_tokens, self.passthrough = prompt_tokens, passthrough
        self.text = ""  # the whole text so far


def _value(array):
    item = array.reshape(-1)[0]
    return item.decode() if isinstance(item, bytes) else item


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = parameters(config)
        self.name = config["name"]
        self.decoupled = bool(pb_utils.using_decoupled_model_transaction_policy(config))
        self.llm_model = params.get("llm_model", llmapi.LLMAPI.name)
        self.exclude_input = params.get("exclude_input_in_output", "true") == "true"
        self.outputs = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["output"]}
        self.required = required_inputs(config)
        tokenizer_dir = Path(args["model_repository"]) / args["model_version"] / params["tokenizer_dir"]
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        template = tokenizer_dir / "chat_template.jinja"
        self.chat_template = None
        if template.is_file():
            import jinja2

            self.chat_template = jinja2.Environment().from_string(template.read_text())

    def execute(self, requests):
        if self.decoupled:
            send_each(self.name, requests, self._start)
            return None
        return answer_each(self.name, requests, self._answer)

    # -- the request's rows ----------------------------------------------------------------------------------

    def _rows(self, request, stream):
        check_required(request, self.required)
        got = {}
        for name in (*llmapi.TO_LLMAPI, *llmapi.UNSUPPORTED, *llmapi.BY_ADAPTER, llm.PASSTHROUGH_IN.name):
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is not None:
                got[name] = tensor.as_numpy().copy()  # the request is released when execute returns
        for name, neutral in llmapi.UNSUPPORTED.items():
            if name in got and not _neutral(got[name], neutral):
                raise ClientError(
                    f"{name} is not supported on the LLM-API path: TensorRT-LLM's llmapi model has no such "
                    "input (the engine path has it)"
                )
        batch = len(got[llm.TEXT_INPUT.name])
        rows = []
        for b in range(batch):
            where = f"row {b}: " if batch > 1 else ""
            text = _value(got[llm.TEXT_INPUT.name][b]) if got[llm.TEXT_INPUT.name][b].size else ""
            if not text.strip():
                raise ClientError(f"{where}empty prompt: {llm.TEXT_INPUT.name} has no text")
            chat = got.get(llm.APPLY_CHAT_TEMPLATE.name)
            if chat is not None and bool(chat[b].reshape(-1)[0]):
                if self.chat_template is None:
                    raise ClientError("this model has no chat template")
                text = self.chat_template.render(
                    messages=[{"role": "user", "content": text}], add_generation_prompt=True
                )
            values = {llmapi.LLMAPI_TEXT_INPUT.name: np.array([text.encode()], dtype=np.object_)}
            for client, name in llmapi.TO_LLMAPI.items():
                if client in got and client != llm.TEXT_INPUT.name and name not in values:
                    values[name] = got[client][b].reshape(-1)
            values[llmapi.LLMAPI_STREAMING.name] = np.array([stream])
            values.setdefault(llmapi.LLMAPI_EXCLUDE_INPUT.name, np.array([self.exclude_input]))
            top_k, top_p = llmapi.LLMAPI_TOP_K.name, llmapi.LLMAPI_TOP_P.name
            if top_p in values and values[top_p][0] <= 0:  # top_p 0: none; with top_k 0 too, greedy
                del values[top_p]
                if top_k not in values or values[top_k][0] <= 0:
                    values[top_k] = np.array([1], dtype=np.int32)
            passthrough = got.get(llm.PASSTHROUGH_IN.name)
            rows.append(
                Row(
                    b,
                    [pb_utils.Tensor(n, v) for n, v in values.items()],
                    len(self.tokenizer.encode(text).ids),
                    None if passthrough is None else passthrough[b].reshape(1, -1),
                )
            )
        return rows

    def _wanted(self, request, name):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        return tensor is not None and bool(tensor.as_numpy().any())

    # -- generation ------------------------------------------------------------------------------------------

    def _generate(self, row, request_id, cancelled):
        """The LLM-API model's text responses for ``row``: yields each new part of the text."""
        row_id = f"{request_id}-{row.index}"
        call = pb_utils.InferenceRequest(
            model_name=self.llm_model, inputs=row.inputs, requested_output_names=[TEXT], request_id=row_id
        )
        for response in call.exec(decoupled=True):
            if response.has_error():
                message = response.error().message()
                named = (
                    message if message.startswith(f"{self.llm_model}:") else f"{self.llm_model}: {message}"
                )
                raise Passed(named) if is_fault(message) else ClientError(named)
            tensor = pb_utils.get_output_tensor_by_name(response, TEXT)
            if tensor is None:  # the empty final response
                continue
            text = _value(tensor.as_numpy())
            new = text[len(row.text) :] if text.startswith(row.text) else text
            row.text = text
            yield new
            if cancelled():
                self._stop(row_id)
                return

    def _stop(self, row_id):
        """The LLM-API model's stop request: ends the generation that carries ``row_id``."""
        inputs = [
            pb_utils.Tensor(llmapi.LLMAPI_TEXT_INPUT.name, np.array([b""], dtype=np.object_)),
            pb_utils.Tensor(llmapi.LLMAPI_STOP.name, np.array([True])),
        ]
        stop = pb_utils.InferenceRequest(
            model_name=self.llm_model, inputs=inputs, requested_output_names=[TEXT], request_id=row_id
        )
        for _ in stop.exec(decoupled=True):  # answered with a CANCELLED error: the stop is done
            pass

    def _tensors(self, rows, texts, counts):
        """The client's tensors for ``rows`` (each with one text), the counts where asked."""
        out = {llm.TEXT_OUTPUT.name: [[t.encode()] for t in texts]}
        if counts[0]:
            out[llm.NUM_INPUT_TOKENS.name] = [[r.prompt_tokens] for r in rows]
        if counts[1]:
            out[llm.NUM_OUTPUT_TOKENS.name] = [
                [len(self.tokenizer.encode(r.text, add_special_tokens=False).ids)] for r in rows
            ]
        return [pb_utils.Tensor(n, np.array(v, dtype=self.outputs[n])) for n, v in out.items()]

    def _counts(self, request):
        return (
            self._wanted(request, llm.RETURN_NUM_INPUT_TOKENS.name),
            self._wanted(request, llm.RETURN_NUM_OUTPUT_TOKENS.name),
        )

    # -- decoupled: ensemble and rag's step ------------------------------------------------------------------

    def _start(self, request, sender):
        stream = self._wanted(request, llm.STREAM.name)
        rows = self._rows(request, stream)
        request_id = request.request_id() or uuid.uuid4().hex
        counts = self._counts(request)
        threading.Thread(target=self._stream, args=(rows, request_id, counts, sender), daemon=True).start()

    def _stream(self, rows, request_id, counts, sender):
        lock, failed = threading.Lock(), []

        def cancelled():
            return bool(failed) or sender.is_cancelled()

        def run(row):
            try:
                for new in self._generate(row, request_id, cancelled):
                    tensors = self._tensors([row], [new], counts)
                    if len(rows) > 1:
                        index = np.array([[row.index]], dtype=self.outputs[llm.BATCH_INDEX.name])
                        tensors.append(pb_utils.Tensor(llm.BATCH_INDEX.name, index))
                    if row.passthrough is not None and llm.PASSTHROUGH_OUT.name in self.outputs:
                        tensors.append(pb_utils.Tensor(llm.PASSTHROUGH_OUT.name, row.passthrough))
                        row.passthrough = None
                    with lock:
                        if not failed:
                            sender.send(pb_utils.InferenceResponse(tensors))
            except Exception as exc:  # the row's error is the request's; the other rows stop
                with lock:
                    failed.append(exc)

        threads = [threading.Thread(target=run, args=(row,), daemon=True) for row in rows]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            sender.send(pb_utils.InferenceResponse(error=error(self.name, failed[0])), flags=FINAL)
        else:
            sender.send(flags=FINAL)

    # -- not decoupled: tensorrt_llm_bls ---------------------------------------------------------------------

    def _answer(self, request):
        if self._wanted(request, llm.STREAM.name):
            raise ClientError(
                f"{self.name} does not stream: send {llm.STREAM.name}=true to the '{llm.ENSEMBLE.name}' model"
            )
        rows = self._rows(request, False)
        request_id = request.request_id() or uuid.uuid4().hex
        failed = []

        def run(row):
            try:
                for _ in self._generate(row, request_id, lambda: bool(failed)):
                    pass
            except Exception as exc:
                failed.append(exc)

        threads = [threading.Thread(target=run, args=(row,), daemon=True) for row in rows]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            raise failed[0]
        return pb_utils.InferenceResponse(self._tensors(rows, [r.text for r in rows], self._counts(request)))


def _neutral(array, neutral):
    """Whether a client's value asks for nothing the LLM-API model lacks (None: only empty text does)."""
    values = array.reshape(-1)
    if neutral is None:
        return all(isinstance(v, bytes | str) and not v for v in values)
    return bool(np.all(values == neutral))
