"""Incremental detokenization that never splits a multi-byte character or a word's leading space.

Decoding tokens one at a time breaks UTF-8 characters spread over several byte-level tokens (an emoji is often
three or four tokens) and drops SentencePiece's leading spaces. Instead, decode a short window of recent
tokens and emit only the text the window adds, holding back while it ends in an incomplete character
(U+FFFD), as vLLM and TGI do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


class IncrementalDetokenizer:
    """Turns a stream of token ids into a stream of complete text pieces."""

    def __init__(self, tokenizer: Decoder, skip_special_tokens: bool = True) -> None:
        self._tok = tokenizer
        self._skip = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # start of the decoding window
        self._read = 0  # tokens up to here have been emitted as text

    def _decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=self._skip)

    def add(self, ids: Sequence[int]) -> str:
        """Append token ids; return the new complete text ("" while a character is still incomplete)."""
        self.ids.extend(int(i) for i in ids)
        before = self._decode(self.ids[self._prefix : self._read])
        text = self._decode(self.ids[self._prefix :])
        if len(text) > len(before) and not text.endswith(REPLACEMENT):
            self._prefix, self._read = self._read, len(self.ids)
            return text[len(before) :]
        return ""

    @property
    def pending(self) -> int:
        """How many added tokens have not been emitted as text yet."""
        return len(self.ids) - self._read

    def flush(self) -> str:
        """The text of the held-back tokens, incomplete characters included (end of a stream)."""
        before = self._decode(self.ids[self._prefix : self._read])
        text = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return text[len(before) :]
