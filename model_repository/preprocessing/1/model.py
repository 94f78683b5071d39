"""preprocessing: text and word lists in, token ids and TensorRT-LLM's runtime tensors out.

Tensor names are those of TensorRT-LLM's inflight_batcher_llm ``preprocessing`` model. It also normalizes
the names older clients send (``random_seed`` for ``seed``, ``min_length`` for ``min_tokens``) into
``OUT_SEED`` and ``OUT_MIN_TOKENS``, and applies the model's chat template when ``APPLY_CHAT_TEMPLATE`` is
true (the text is then the user message). Bad requests get their own error; the rest of the batch goes on.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


def _get(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)


def _first(request, names, default):
    for name in names:
        value = _get(request, name)
        if value is not None and value.size:
            return value[0].item()
    return default


def _text(value):
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"text is not valid UTF-8: {exc}") from None
    return str(value)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
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
                responses.append(pb_utils.InferenceResponse(self._preprocess(request)))
            except ValueError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses

    def _preprocess(self, request):
        query = _get(request, "QUERY")
        text = _text(query[0]) if query is not None and query.size else ""
        if not text.strip():
            raise ValueError("empty prompt: text_input has no text")
        if _first(request, ["APPLY_CHAT_TEMPLATE"], False):
            if self.chat_template is None:
                raise ValueError("this model has no chat template")
            text = self.chat_template.render(
                messages=[{"role": "user", "content": text}], add_generation_prompt=True
            )
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        output_len = _get(request, "REQUEST_OUTPUT_LEN")
        if output_len is None or output_len.size == 0:
            raise ValueError("max_tokens is required")
        end_id = int(_first(request, ["END_ID"], self.end_id))
        pad_id = int(_first(request, ["PAD_ID"], self.pad_id))
        tensors = {
            "INPUT_ID": np.array([ids], dtype=np.int32),
            "REQUEST_INPUT_LEN": np.array([[len(ids)]], dtype=np.int32),
            "REQUEST_OUTPUT_LEN": output_len.astype(np.int32).reshape(1, 1),
            "BAD_WORDS_IDS": self._word_list(_get(request, "BAD_WORDS_DICT")),
            "STOP_WORDS_IDS": self._word_list(_get(request, "STOP_WORDS_DICT")),
            "OUT_END_ID": np.array([[end_id]], dtype=np.int32),
            "OUT_PAD_ID": np.array([[pad_id]], dtype=np.int32),
            "OUT_SEED": np.array([[_first(request, ["SEED", "RANDOM_SEED"], 0)]], dtype=np.uint64),
            "OUT_MIN_TOKENS": np.array([[_first(request, ["MIN_TOKENS", "MIN_LENGTH"], 0)]], dtype=np.int32),
        }
        return [pb_utils.Tensor(name, value) for name, value in tensors.items()]

    def _word_list(self, words):
        """TensorRT-LLM's ``[1, 2, N]`` layout: flat ids, then end offsets padded with -1."""
        ids, offsets = [], []
        for word in [] if words is None else words:
            text = _text(word)
            if text:
                ids += self.tokenizer.encode(text, add_special_tokens=False).ids
                offsets.append(len(ids))
        if not ids:
            return np.array([[[0], [-1]]], dtype=np.int32)
        offsets += [-1] * (len(ids) - len(offsets))
        return np.array([[ids, offsets]], dtype=np.int32)
