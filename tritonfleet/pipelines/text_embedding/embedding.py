"""Text embeddings: the tokenization that the served ``tokenizer`` model runs, in one place.

The served ``tokenizer`` model, the export's parity check, the benchmark floor and the RAG index build all
call :class:`TextTokenizer`, so what is embedded is tokenized the same way everywhere. The tokenizer file
is the model's own ``tokenizer.json``, written at build time by :func:`write_tokenizer` with the model's
truncation limit (sentence-transformers' ``max_seq_length``, 256 word pieces for all-MiniLM-L6-v2, not the
128 that the file ships with) and padding to the longest text of a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from tritonfleet.errors import ClientError


class TextError(ClientError):
    """A text that cannot be embedded (the client's mistake)."""


@dataclass(frozen=True)
class Encoded:
    """A tokenized batch: ids and mask padded to one length, and per text its token count and truncation."""

    input_ids: np.ndarray  # int64 [n, length]
    attention_mask: np.ndarray  # int64 [n, length]
    num_tokens: np.ndarray  # int32 [n]: word pieces embedded, [CLS] and [SEP] included (after truncation)
    truncated: np.ndarray  # bool [n]: the text was longer than the model's limit and was cut
    empty: np.ndarray  # bool [n]: no word pieces but the special tokens (an empty or blank text)

    def rows(self, start: int, stop: int) -> Encoded:
        return Encoded(*(a[start:stop] for a in vars(self).values()))


def write_tokenizer(source: Path, dest: Path, max_tokens: int) -> None:
    """Copy ``source`` (a ``tokenizer.json``) to ``dest`` with truncation at ``max_tokens`` and padding to
    the longest text of each batch."""
    tokenizer = Tokenizer.from_file(str(source))
    pad_token = (tokenizer.padding or {}).get("pad_token", "[PAD]")
    pad_id = tokenizer.token_to_id(pad_token)
    if pad_id is None:
        raise ValueError(f"{source}: no pad token {pad_token!r} in the vocabulary")
    tokenizer.enable_truncation(max_tokens)
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(dest))


class TextTokenizer:
    """A ``tokenizer.json`` written by :func:`write_tokenizer`: texts in, one padded batch out.

    ``pad_to_multiple_of`` rounds the padded length up (the served tokenizer's config sets it: batches of
    different texts then more often share a length, which Triton's dynamic batcher needs to batch them)."""

    def __init__(self, path: Path, pad_to_multiple_of: int | None = None) -> None:
        self.tokenizer = Tokenizer.from_file(str(path))
        if self.tokenizer.truncation is None or self.tokenizer.padding is None:
            raise ValueError(f"{path}: truncation and padding must be configured (write_tokenizer)")
        if self.tokenizer.padding.get("length") is not None:
            raise ValueError(f"{path}: padding must be to the longest text of a batch, not a fixed length")
        if pad_to_multiple_of:
            padding = self.tokenizer.padding
            self.tokenizer.enable_padding(
                pad_id=padding["pad_id"],
                pad_token=padding["pad_token"],
                pad_to_multiple_of=pad_to_multiple_of,
            )
        self.max_tokens = int(self.tokenizer.truncation["max_length"])
        self.special_tokens = self.tokenizer.num_special_tokens_to_add(is_pair=False)

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Tokenize ``texts`` as one batch, padded to the longest."""
        encodings = self.tokenizer.encode_batch(list(texts))
        length = len(encodings[0].ids) if encodings else 0
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(encodings), length)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(ids.shape)
        num_tokens = mask.sum(axis=1).astype(np.int32)
        return Encoded(
            input_ids=ids,
            attention_mask=mask,
            num_tokens=num_tokens,
            truncated=np.array([bool(e.overflowing) for e in encodings], dtype=bool),
            empty=num_tokens <= self.special_tokens,
        )


def decode_text(value: Any) -> str:
    """One element of a Triton STRING tensor as text; :class:`TextError` unless it is valid UTF-8."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextError(f"text is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if isinstance(value, str):
        return value
    raise TextError(f"text must be a string, not {type(value).__name__}")


class OnnxEmbedder:
    """The served pipeline in one process: :class:`TextTokenizer` and the ONNX model on onnxruntime.

    For the build's checks, the benchmark floor and the RAG index, never for serving (the server runs the
    two as separate models)."""

    def __init__(self, tokenizer: Path, model: Path, intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        self.tokenizer = TextTokenizer(tokenizer)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        (self.output,) = [o.name for o in self.session.get_outputs()]

    def run(self, encoded: Encoded) -> np.ndarray:
        feed = {"input_ids": encoded.input_ids, "attention_mask": encoded.attention_mask}
        return self.session.run([self.output], feed)[0]

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Unit-length embeddings, float32 [len(texts), dim], ``batch_size`` texts per run."""
        parts = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer.encode(texts[start : start + batch_size])
            if encoded.empty.any():
                raise TextError(
                    f"text {start + int(encoded.empty.argmax())} is empty: no word pieces to embed"
                )
            parts.append(self.run(encoded))
        return np.concatenate(parts)
