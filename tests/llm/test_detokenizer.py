"""Incremental detokenization on the real tokenizer: token by token, never a broken character."""

from pathlib import Path

import pytest

from tritonfleet.pipelines.llm.detokenizer import IncrementalDetokenizer

tokenizers = pytest.importorskip("tokenizers")
TOKENIZER = (
    Path(__file__).resolve().parents[2]
    / "model_repository"
    / "preprocessing"
    / "1"
    / "tokenizer"
    / "tokenizer.json"
)


@pytest.mark.skipif(not TOKENIZER.is_file(), reason="no tokenizer: run python build/llm/cpu_engine.py")
@pytest.mark.parametrize("text", ["café ☕ 日本語 😀 naïve", "Hello, world!  Two spaces.", "🇫🇷👩‍👩‍👧 ok"])
def test_token_by_token_matches_whole_decode(text):
    tok = tokenizers.Tokenizer.from_file(str(TOKENIZER))
    ids = tok.encode(text, add_special_tokens=False).ids
    detok = IncrementalDetokenizer(tok)
    pieces = [detok.add([i]) for i in ids]
    pieces.append(detok.flush())
    assert "".join(pieces) == tok.decode(ids) == text
    assert all("\ufffd" not in p for p in pieces)
    if any(ord(c) > 0x7FF for c in text):  # characters of 3-4 bytes span tokens: some were held back
        assert len(ids) > len([p for p in pieces if p])
