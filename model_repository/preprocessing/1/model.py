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

from tritonfleet.errors import ClientError
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.python_backend import answer_each, check_required, output_dtypes, parameters, required_inputs


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
        params = parameters(config)
        self.dtypes = output_dtypes(config)
        self.required = required_inputs(config)
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
        name = llm.PREPROCESSING.name
        return answer_each(name, requests, self._answer, prefix=f"{name}: ")

    def _answer(self, request):
        tensors = self._preprocess(request)
        return pb_utils.InferenceResponse([pb_utils.Tensor(n, v) for n, v in tensors.items()])

    def _preprocess(self, request):
        check_required(request, self.required)
        queries = _rows(request, llm.PRE_QUERY.name)
        batch = len(queries)
        lengths = _column(request, [llm.PRE_REQUEST_OUTPUT_LEN.name], None, batch)
        end_ids = _column(request, [llm.PRE_END_ID.name], self.end_id, batch)
        pad_ids = _column(request, [llm.PRE_PAD_ID.name], self.pad_id, batch)
        chat = _column(request, [llm.PRE_APPLY_CHAT_TEMPLATE.name], False, batch)
        stop_words, bad_words = (
            _rows(request, llm.PRE_STOP_WORDS_DICT.name, batch),
            _rows(request, llm.PRE_BAD_WORDS_DICT.name, batch),
        )
        prompts, stops, bads = [], [], []
        for i in range(batch):
            where = f"row {i}: " if batch > 1 else ""
            text = _text(queries[i][0], f"{where}{llm.TEXT_INPUT.name}") if queries[i].size else ""
            if not text.strip():
                raise ClientError(f"{where}empty prompt: {llm.TEXT_INPUT.name} has no text")
            if chat[i]:
                if self.chat_template is None:
                    raise ClientError("this model has no chat template")
                text = self.chat_template.render(
                    messages=[{"role": "user", "content": text}], add_generation_prompt=True
                )
            prompts.append(self._encode(text))
            stops.append(self._word_list(stop_words[i], f"{where}{llm.STOP_WORDS.name}"))
            bads.append(self._word_list(bad_words[i], f"{where}{llm.BAD_WORDS.name}"))
        longest = max(len(p) for p in prompts)
        input_ids = np.array(
            [p + [pad] * (longest - len(p)) for p, pad in zip(prompts, pad_ids, strict=True)]
        )
        seeds = _column(request, [llm.PRE_SEED.name, llm.PRE_RANDOM_SEED.name], 0, batch)
        min_tokens = _column(request, [llm.PRE_MIN_TOKENS.name, llm.PRE_MIN_LENGTH.name], 0, batch)
        values = {
            llm.PRE_INPUT_ID.name: input_ids,
            llm.PRE_REQUEST_INPUT_LEN.name: [[len(p)] for p in prompts],
            llm.PRE_BAD_WORDS_IDS.name: _word_lists(bads),
            llm.PRE_STOP_WORDS_IDS.name: _word_lists(stops),
            llm.PRE_OUT_REQUEST_OUTPUT_LEN.name: [[n] for n in lengths],
            llm.PRE_OUT_END_ID.name: [[n] for n in end_ids],
            llm.PRE_OUT_PAD_ID.name: [[n] for n in pad_ids],
            llm.PRE_OUT_SEED.name: [[n] for n in seeds],
            llm.PRE_OUT_MIN_TOKENS.name: [[n] for n in min_tokens],
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
