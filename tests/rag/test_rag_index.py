"""tritonfleet.pipelines.rag.retrieval without a server: Markdown chunking, passages, BM25, the index round
trip and the fused search, the prompt, labels; the frozen corpus's labelled questions against its documents;
the index build's labels, strict (the frozen corpus) or reported (README and docs/, free to change)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.rag import frozen
from tritonfleet.artifacts import PROJECT_ROOT, REPOSITORY
from tritonfleet.pipelines.rag.pipeline import CORPUS
from tritonfleet.pipelines.rag.retrieval import (
    Bm25,
    Chunk,
    Hit,
    Index,
    chunk_document,
    found_at,
    is_hit,
    labels,
    passages,
    prompt,
    stale_labels,
)

DOC = """# Guide

Intro paragraph about the guide.

## Install

Run `make setup` first.

```bash
# this is a comment, not a heading
make serve
```

## Tuning

### Threads

one two three four five six seven eight nine ten

eleven twelve thirteen
"""


def words(text: str) -> int:
    return len(text.split())


def test_sections_follow_headings_and_code_fences_stay_whole() -> None:
    chunks = chunk_document("docs/guide.md", DOC, words, limit=30)
    assert [(c.number, c.heading) for c in chunks] == [
        (1, "Guide"),
        (2, "Guide > Install"),
        (3, "Guide > Tuning > Threads"),
    ]
    assert "# this is a comment, not a heading\nmake serve" in chunks[1].text
    assert chunks[1].source == "docs/guide.md#2"
    assert chunks[2].embedded_text.startswith("Guide > Tuning > Threads\none two")


def test_paragraphs_are_packed_up_to_the_limit_and_long_ones_split() -> None:
    chunks = chunk_document("g.md", DOC, words, limit=12)
    threads = [c.text for c in chunks if c.heading.endswith("Threads")]
    # The heading trail takes 5 of the 12 words: 7 are left for the text. The 10-word paragraph is cut at
    # 7 words, and its rest is packed with the next paragraph.
    assert threads == ["one two three four five six seven", "eight nine ten\n\neleven twelve thirteen"]
    assert all(words(c.embedded_text) <= 12 for c in chunks)


def test_bm25_ranks_the_rare_word_first() -> None:
    bm25 = Bm25(["the server starts", "set TRITONFLEET_API_KEY for the key", "the server stops"])
    scores = bm25.scores("Which variable holds the API key?")
    assert int(np.argmax(scores)) == 1 and scores[0] == scores[2] == 0


def test_index_round_trip_and_hybrid_search(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    chunks = [
        Chunk("a.md", i + 1, "A", text) for i, text in enumerate(["red apples", "green pears", "blue sky"])
    ]
    vectors = np.eye(3, 4, dtype=np.float32)  # unit vectors: chunk i is along axis i
    Index.build(chunks, vectors).save(tmp_path)
    index = Index.load(tmp_path)
    (hits,) = index.search(np.array([[0.1, 0.9, 0.0, 0.0]], np.float32), ["green"], 2)
    assert [h.chunk.source for h in hits] == ["a.md#2", "a.md#1"]
    assert hits[0].score == pytest.approx(0.9)
    (hits,) = index.search(np.array([[0.0, 0.0, 0.0, 1.0]], np.float32), ["sky"], 1)  # words break the tie
    assert hits[0].chunk.source == "a.md#3"


def test_prompt_numbers_the_sources_before_the_question() -> None:
    hits = Index.build(
        [Chunk("a.md", 1, "A > B", "first"), Chunk("b.md", 4, "", "second")], np.eye(2, dtype=np.float32)
    ).search(np.eye(2, dtype=np.float32)[:1], ["q"], 2)[0]
    text = prompt("What?", hits)
    assert text.index("[1] a.md#1 (A > B):\nfirst") < text.index("[2] b.md#4 (b.md):\nsecond")
    assert text.endswith("Question: What?")


def test_labels_match_file_and_phrase_whatever_the_line_breaks() -> None:
    chunk = Chunk("README.md", 2, "T", "Send `Authorization: Bearer\n  $TRITONFLEET_API_KEY` when set.")
    assert is_hit(chunk, "README.md", "bearer $tritonfleet_api_key")
    assert not is_hit(chunk, "docs/other.md", "Bearer $TRITONFLEET_API_KEY")
    assert not is_hit(chunk, "README.md", "Bearer token")


def test_passages_pack_whole_sentences_and_lines() -> None:
    text = "One two three. Four five six seven. Eight nine.\n| a | b |"
    assert passages(text, words, limit=6) == (
        "One two three.",
        "Four five six seven. Eight nine.",
        "| a | b |",
    )
    assert passages("Short text. Two sentences.", words, limit=6) == ()  # one piece: the chunk itself
    (chunk,) = chunk_document(
        "g.md", "# T\n\nOne two three. Four five six seven.", words, 30, passage_limit=4
    )
    assert chunk.passages == ("One two three.", "Four five six seven.")
    assert chunk.embedded_texts == [
        "T\nOne two three. Four five six seven.",
        "T\nOne two three.",
        "T\nFour five six seven.",
    ]


def test_a_chunk_scores_by_its_best_vector() -> None:
    """A chunk whose one passage matches the question outranks a chunk that matches it a little as a whole,
    and hits carry the best cosine; vectors are the chunks' embedded texts in order."""
    pytest.importorskip("faiss")
    chunks = [Chunk("a.md", 1, "", "whole", ("p1", "p2")), Chunk("a.md", 2, "", "other")]
    vectors = np.array([[0.6, 0.8, 0], [1, 0, 0], [0, 0, 1], [0.8, 0.6, 0]], np.float32)
    (hits,) = Index.build(chunks, vectors).search(np.array([[0, 0, 1]], np.float32), ["q"], 2)
    assert [h.chunk.number for h in hits] == [1, 2] and hits[0].score == pytest.approx(1.0)
    with pytest.raises(ValueError, match="3 vectors for 4 embedded texts"):
        Index.build(chunks, vectors[:3])


def test_stale_labels_name_the_question_file_and_phrase() -> None:
    questions = [
        {
            "question": "Q1?",
            "file": "a.md",
            "phrase": "make  Serve",
            "also": [{"file": "b.md", "phrase": "gone"}],
        },
        {"question": "Q2?", "file": "c.md", "phrase": "anything"},  # c.md is not in the documents
    ]
    assert labels(questions[0]) == [("a.md", "make  Serve"), ("b.md", "gone")]
    assert stale_labels(questions, {"a.md": "run make\nserve", "b.md": "here"}) == [
        "question 'Q1?': 'gone' is not in b.md (the document changed: relabel it)"
    ]
    chunk = Chunk("b.md", 3, "", "it is gone now")
    assert found_at([Hit(Chunk("a.md", 1, "", "x"), 0.0), Hit(chunk, 0.0)], questions[0]) == 2


def test_the_labelled_questions_match_the_documents() -> None:
    """Every label's phrase is in its file of the frozen corpus (which nobody edits); the set covers every
    file and has a tune half and a held-out half."""
    questions = json.loads(frozen.QUESTIONS.read_text())
    paths = CORPUS.paths(frozen.relative(frozen.CORPUS))
    corpus = {frozen.relative(p): p.read_text() for p in paths}
    assert {path for q in questions for path, _ in labels(q)} <= corpus.keys()
    assert stale_labels(questions, corpus) == []
    assert {q["file"] for q in questions} == corpus.keys()
    assert len({q["question"] for q in questions}) == len(questions) >= 60
    halves = Counter(q["half"] for q in questions)
    assert halves.keys() == {"tune", "held-out"} and min(halves.values()) >= 30, halves


def build_index(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """build/rag/build_index.py on a corpus of two small documents, with a label that no longer holds."""
    for name in ("tokenizer/1/tokenizer.json", "minilm_l6/1/model.onnx"):
        if not (REPOSITORY / name).is_file():
            pytest.skip(f"{name} is not built (fleet build text_embedding)")
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "a.md").write_text("# Serving\n\nRun `make serve` to serve the fleet.\n")
    (docs / "b.md").write_text("# Keys\n\nThe key is read from TRITONFLEET_API_KEY.\n")
    questions = [
        {"question": "How do I serve?", "file": str(docs / "a.md"), "phrase": "make serve", "half": "tune"},
        {"question": "Which key?", "file": str(docs / "b.md"), "phrase": "API_TOKEN", "half": "held-out"},
    ]
    (tmp_path / "questions.json").write_text(json.dumps(questions))
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "build/rag/build_index.py"), "--corpus", str(docs),
         "--tokenizer", str(REPOSITORY / "tokenizer/1/tokenizer.json"),
         "--model", str(REPOSITORY / "minilm_l6/1/model.onnx"),
         "--questions", str(tmp_path / "questions.json"), "--output", str(tmp_path / "out"), *extra],
        capture_output=True, text=True,
    )  # fmt: skip


def test_a_stale_label_is_reported_and_fails_only_a_strict_build(tmp_path: Path) -> None:
    """The default corpus (README and docs/) may change under its labels: the build reports the stale one
    and installs the index; the frozen corpus's build is strict, so there it fails."""
    loose = build_index(tmp_path)
    assert loose.returncode == 0, loose.stderr
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["failures"] == [] and len(report["stale_labels"]) == 1
    assert "'API_TOKEN' is not in" in report["stale_labels"][0] and "stale label" in loose.stdout
    assert (tmp_path / "out" / "index.faiss").is_file()
    (tmp_path / "out" / "index.faiss").unlink()
    strict = build_index(tmp_path, "--strict-labels")
    assert strict.returncode == 1 and "API_TOKEN" in strict.stderr
    assert not (tmp_path / "out" / "index.faiss").exists()
