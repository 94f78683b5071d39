"""preprocessing: text and word lists in, token ids and TensorRT-LLM's runtime tensors out.

Tensor names are those of TensorRT-LLM's inflight_batcher_llm ``preprocessing`` model. It also normalizes
the names older clients send (``random_seed`` for ``seed``, ``min_length`` for ``min_tokens``) into
``OUT_SEED`` and ``OUT_MIN_TOKENS``, and applies the model's chat template when ``APPLY_CHAT_TEMPLATE`` is
true (the text is then the user message).

A request holds a batch of rows (``QUERY`` shaped ``[batch, 1]``), each its own prompt with its own optional
values, as in TensorRT-LLM: ``INPUT_ID`` is ``[batch, longest]`` padded with each row's pad id, word lists
``[batch, 2, longest]``. Output data types are read from the config. A bad row fails its request with
INVALID_ARG (naming the row when there are several); the other requests of a dynamic batch go on.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

from tritonfleet.pipelines.llm.errors import fault


class ClientError(ValueError):
    """A request the client got wrong: INVALID_ARG with this message."""


def _text(value, what):
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ClientError(f"{what} is not valid UTF-8: {exc}") from None
    return str(value)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.dtypes = {t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["output"]}
        self.required = [t["name"] for t in config["input"] if not t.get("optional")]
        tokenizer_dir = (
            Path(args["model_repository"]) / args["model_version"] / params.get("tokenizer_dir", "tokenizer")
        )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        tok_config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
        self.end_id = self.tokenizer.token_to_id(tok_config["eos_token"])
        self.pad_id = self.tokenizer.token_to_id(tok_config.get("pad_token") or tok_config["eos_token"])
        template = tokenizer_dir / "chat_template.jinja"
        self.chat_template = None
        if template.is_file():
            import jinja2

            self.chat_template = jinja2.Environment().from_string(template.read_text())

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                tensors = self._preprocess(request)
                responses.append(
                    pb_utils.InferenceResponse([pb_utils.Tensor(n, v) for n, v in tensors.items()])
                )
            except ClientError as exc:
                error = pb_utils.TritonError(f"preprocessing: {exc}", pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
            except Exception as exc:  # a fault of ours: fail this request only
                error = pb_utils.TritonError(fault("preprocessing", exc))
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def _preprocess(self, request):
        # Triton 24.10 checks how many inputs a request has, not which: a required one may be missing.
        missing = [n for n in self.required if pb_utils.get_input_tensor_by_name(request, n) is None]
        if missing:
            raise ClientError(f"missing required input(s) {missing}")
        queries = _rows(request, "QUERY")
        batch = len(queries)
        lengths = _column(request, ["REQUEST_OUTPUT_LEN"], None, batch)
        end_ids = _column(request, ["END_ID"], self.end_id, batch)
        pad_ids = _column(request, ["PAD_ID"], self.pad_id, batch)
        chat = _column(request, ["APPLY_CHAT_TEMPLATE"], False, batch)
        stop_words, bad_words = (
            _rows(request, "STOP_WORDS_DICT", batch),
            _rows(request, "BAD_WORDS_DICT", batch),
        )
        prompts, stops, bads = [], [], []
        for i in range(batch):
            where = f"row {i}: " if batch > 1 else ""
            text = _text(queries[i][0], f"{where}text_input") if queries[i].size else ""
            if not text.strip():
                raise ClientError(f"{where}empty prompt: text_input has no text")
            if chat[i]:
                if self.chat_template is None:
                    raise ClientError("this model has no chat template")
                text = self.chat_template.render(
                    messages=[{"role": "user", "content": text}], add_generation_prompt=True
                )
            prompts.append(self._encode(text))
            stops.append(self._word_list(stop_words[i], f"{where}stop_words"))
            bads.append(self._word_list(bad_words[i], f"{where}bad_words"))
        longest = max(len(p) for p in prompts)
        input_ids = np.array(
            [p + [pad] * (longest - len(p)) for p, pad in zip(prompts, pad_ids, strict=True)]
        )
        values = {
            "INPUT_ID": input_ids,
            "REQUEST_INPUT_LEN": [[len(p)] for p in prompts],
            "BAD_WORDS_IDS": _word_lists(bads),
            "STOP_WORDS_IDS": _word_lists(stops),
            "REQUEST_OUTPUT_LEN": [[n] for n in lengths],
            "OUT_END_ID": [[n] for n in end_ids],
            "OUT_PAD_ID": [[n] for n in pad_ids],
            "OUT_SEED": [[n] for n in _column(request, ["SEED", "RANDOM_SEED"], 0, batch)],
            "OUT_MIN_TOKENS": [[n] for n in _column(request, ["MIN_TOKENS", "MIN_LENGTH"], 0, batch)],
        }
        return {name: np.asarray(value, dtype=self.dtypes[name]) for name, value in values.items()}

    def _encode(self, text):
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def _word_list(self, words, what):
        """One row's words as ``(flat ids, end offsets)``; empty words are skipped."""
        ids, offsets = [], []
        for word in words:
            text = _text(word, what)
            if text:
                ids += self._encode(text)
                offsets.append(len(ids))
        return ids, offsets


def _rows(request, name, batch=None):
    """An input as one array per row (``batch`` empty rows when the input is absent)."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return [np.empty(0, dtype=np.object_)] * (batch or 0)
    value = tensor.as_numpy()
    return list(value if value.ndim == 2 else value.reshape(len(value), -1))


def _column(request, names, default, batch):
    """One value per row: the first of ``names`` that is present (an alias each), else ``default``."""
    for name in names:
        rows = _rows(request, name)
        if rows:
            return [row[0].item() if row.size else default for row in rows]
    return [default] * batch


def _word_lists(rows):
    """TensorRT-LLM's ``[batch, 2, N]`` layout: flat ids, then end offsets, both padded (ids with 0, offsets
    with -1) to the longest row; a batch without words is ``[[0], [-1]]`` per row."""
    width = max([1] + [len(ids) for ids, _ in rows])
    return [
        [ids + [0] * (width - len(ids)), offsets + [-1] * (width - len(offsets))] for ids, offsets in rows
    ]
