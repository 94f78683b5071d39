"""Retrieval for the ``rag`` pipeline: Markdown chunking, the FAISS index, the prompt with numbered sources.

The build (``build/rag/build_index.py``) chunks the corpus and embeds the chunks with the same tokenizer
and ONNX model the server runs (``tritonfleet.pipelines.text_embedding.embedding.OnnxEmbedder``); the served
``retriever`` model loads the :class:`Index` and builds the prompt with :func:`prompt`. Chunks follow the
Markdown structure: a section (a heading and what follows it, up to the next heading) is one chunk when it
fits the embedding model's limit, else its paragraphs are packed into chunks that fit. A chunk is embedded
whole and, when it is longer than one passage, also passage by passage (its sentences packed into pieces of a
few dozen word pieces), each with its heading trail ("tritonfleet > Quick start") in front: a chunk's dense
score is the best cosine of its vectors, so one sentence that answers the question is not averaged away by the
rest. Search is hybrid: that dense score and BM25 over the chunk's words, each scaled to [0, 1] over the
corpus and added with weights (a convex combination), because technical questions often hinge on one rare word
(a flag, a file name) that a small sentence-embedding model blurs, while users' wording often matches no word.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")
INDEX_FILE = "index.faiss"
CHUNKS_FILE = "chunks.json"
WORD = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how", "i", "in",
     "is", "it", "its", "my", "not", "of", "on", "or", "the", "this", "that", "to", "what", "when", "where",
     "which", "why", "with")
)  # fmt: skip
CUTS = (
    re.compile(r"\n(?=[ \t]*(?:[-*+]|[0-9]+[.)])[ \t])"),  # before a list item
    re.compile(r"(?<=[.!?])\s+(?=[A-Z`*(\[\"'])"),  # after a sentence
    re.compile(r"\n"),
    re.compile(r" "),
)
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n")
DENSE_WEIGHT = 0.7  # the dense score's share of the fused score, BM25 has the rest (docs/rag.md)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``path#number`` names it (numbers count from 1 within the file)."""

    path: str
    number: int
    heading: str  # the heading trail, "Title > Section > Subsection"
    text: str
    passages: tuple[str, ...] = ()  # the text's pieces embedded one by one (none when it is one piece)

    @property
    def source(self) -> str:
        return f"{self.path}#{self.number}"

    @property
    def embedded_text(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text

    @property
    def embedded_texts(self) -> list[str]:
        """What is embedded for this chunk, one vector each: the whole chunk, then each passage."""
        trail = f"{self.heading}\n" if self.heading else ""
        return [self.embedded_text, *(trail + p for p in self.passages)]


def _blocks(lines: list[str]) -> Iterator[str]:
    """Paragraphs: runs of lines between blank lines; a fenced code block stays whole."""
    block: list[str] = []
    fenced = False
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        if not line.strip() and not fenced:
            if block:
                yield "\n".join(block)
            block = []
        else:
            block.append(line)
    if block:
        yield "\n".join(block)


def _sections(text: str) -> Iterator[tuple[str, list[str]]]:
    """(heading trail, body lines) for each heading of a Markdown text (and the text before the first)."""
    trail: list[str] = []
    body: list[str] = []
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        match = None if fenced else HEADING.match(line)
        if match:
            yield " > ".join(trail), body
            level = len(match.group(1))
            trail = [*trail[: level - 1], match.group(2)]
            body = []
        else:
            body.append(line)
    yield " > ".join(trail), body


def _split(text: str, count: Callable[[str], int], limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` tokens, cut between list items, else between sentences, else
    at line ends, else between words: the first of these that cuts it at all."""
    if count(text) <= limit:
        return [text]
    for cut in CUTS:
        ends = [m.end() for m in cut.finditer(text) if m.start() > 0 and m.end() < len(text)]
        if ends:
            parts = [text[a:b] for a, b in zip([0, *ends], [*ends, len(text)], strict=True)]
            pieces, current = [], ""
            for part in parts:
                if current and count(current + part) > limit:
                    pieces.append(current.rstrip())
                    current = part
                else:
                    current += part
            pieces.append(current.rstrip())
            return [p for piece in pieces for p in _split(piece, count, limit)]
    return [text]  # one word longer than the limit: the tokenizer truncates it


def passages(text: str, count: Callable[[str], int], limit: int) -> tuple[str, ...]:
    """A chunk's text as pieces of whole sentences (or lines: table rows, list items, code) packed up to
    ``limit`` tokens each; empty when the text is one piece."""
    pieces: list[str] = []
    current = ""
    for sentence in (s for s in SENTENCE_END.split(text) if s.strip()):
        candidate = f"{current} {sentence}" if current else sentence
        if current and count(candidate) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = candidate
    if current:
        pieces.append(current)
    return tuple(pieces) if len(pieces) > 1 else ()


def chunk_document(
    path: str, text: str, count: Callable[[str], int], limit: int, passage_limit: int | None = None
) -> list[Chunk]:
    """Chunks of a Markdown or plain-text document; ``count`` gives a text's tokens, ``limit`` the most a
    chunk may embed (heading trail included), ``passage_limit`` the most a passage's text may (its heading
    trail comes on top; None: no passages)."""
    chunks: list[Chunk] = []

    def add(heading: str, body: str) -> None:
        pieces = passages(body, count, passage_limit) if passage_limit else ()
        chunks.append(Chunk(path, len(chunks) + 1, heading, body, pieces))

    for heading, lines in _sections(text):
        room = limit - count(heading)
        current = ""
        for block in (b for b in _blocks(lines) for b in _split(b, count, room)):
            candidate = f"{current}\n\n{block}" if current else block
            if current and count(candidate) > room:
                add(heading, current)
                current = block
            else:
                current = candidate
        if current.strip():
            add(heading, current)
    return chunks


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # the best cosine similarity of the chunk's vectors to the question


@functools.cache
def _stemmer() -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def words(text: str) -> list[str]:
    """BM25's terms: lower-case words and numbers, the commonest English words left out, Snowball-stemmed
    ("serving" and "serves" are "serv")."""
    return _stemmer().stemWords([w for w in WORD.findall(text.lower()) if w not in STOP_WORDS])


class Bm25:
    """Okapi BM25 (k1 1.2, b 0.75) over the chunks' embedded texts (heading trail included)."""

    def __init__(self, texts: list[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.docs = [Counter(words(t)) for t in texts]
        lengths = np.array([sum(d.values()) for d in self.docs], dtype=np.float64)
        self.norm = k1 * (1 - b + b * lengths / max(lengths.mean(), 1.0))
        frequency = Counter(w for d in self.docs for w in d)
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - f + 0.5) / (f + 0.5)) for w, f in frequency.items()}
        self.k1 = k1

    def scores(self, query: str) -> np.ndarray:
        out = np.zeros(len(self.docs))
        for word in set(words(query)) & self.idf.keys():
            tf = np.array([d.get(word, 0) for d in self.docs], dtype=np.float64)
            out += self.idf[word] * tf * (self.k1 + 1) / (tf + self.norm)
        return out


class Index:
    """The chunks of a corpus, a FAISS inner-product index of their unit-length embeddings (each chunk's
    :attr:`Chunk.embedded_texts`, in chunk order), and BM25 over the chunks."""

    def __init__(self, index: object, chunks: list[Chunk]) -> None:
        self.index = index
        self.chunks = chunks
        self.owner = np.repeat(np.arange(len(chunks)), [len(c.embedded_texts) for c in chunks])
        if int(self.index.ntotal) != len(self.owner):
            raise ValueError(f"{self.index.ntotal} vectors for {len(self.owner)} embedded texts")
        self.bm25 = Bm25([c.embedded_text for c in chunks])

    @classmethod
    def build(cls, chunks: list[Chunk], embeddings: np.ndarray) -> Index:
        """``embeddings``: one row per embedded text of every chunk, in order."""
        import faiss

        index = faiss.IndexFlatIP(embeddings.shape[1])  # exact search: a corpus of docs is small
        index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
        return cls(index, chunks)

    def save(self, folder: Path) -> None:
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / INDEX_FILE))
        (folder / CHUNKS_FILE).write_text(json.dumps([asdict(c) for c in self.chunks], indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Index:
        import faiss

        chunks = [
            Chunk(**{**c, "passages": tuple(c.get("passages", ()))})
            for c in json.loads((folder / CHUNKS_FILE).read_text())
        ]
        return cls(faiss.read_index(str(folder / INDEX_FILE)), chunks)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, embeddings: np.ndarray, questions: list[str], k: int) -> list[list[Hit]]:
        """The ``k`` best chunks for each question (its embedding and its text), best first. A chunk's dense
        score is the best cosine of its vectors; it and the chunk's BM25 score are scaled to [0, 1] over the
        corpus (min to max, BM25 from 0) and added, ``DENSE_WEIGHT`` to the rest; ties keep corpus order."""
        vectors = int(self.index.ntotal)
        cosines, ids = self.index.search(np.ascontiguousarray(embeddings, dtype=np.float32), vectors)
        results = []
        for question, row_cosines, row_ids in zip(questions, cosines, ids, strict=True):
            dense = np.full(len(self.chunks), -np.inf)
            np.maximum.at(dense, self.owner[row_ids], row_cosines)
            lexical = self.bm25.scores(question)
            fused = DENSE_WEIGHT * _scaled(dense, dense.min()) + (1 - DENSE_WEIGHT) * _scaled(lexical, 0.0)
            best = np.argsort(-fused, kind="stable")[:k]
            results.append([Hit(self.chunks[i], float(dense[i])) for i in best])
        return results


def _scaled(scores: np.ndarray, low: float) -> np.ndarray:
    """``scores`` mapped from [low, max] to [0, 1]; zeros when they are all equal."""
    span = float(scores.max()) - low
    return (scores - low) / span if span > 0 else np.zeros_like(scores)


def prompt(question: str, hits: list[Hit]) -> str:
    """The user message for the LLM: the numbered sources, then the question."""
    sources = "\n\n".join(
        f"[{n}] {hit.chunk.source} ({hit.chunk.heading or hit.chunk.path}):\n{hit.chunk.text}"
        for n, hit in enumerate(hits, 1)
    )
    return (
        "Answer the question using only the numbered sources below, and cite them by number, like [1]. "
        "If they do not contain the answer, say so.\n\n"
        f"{sources}\n\nQuestion: {question}"
    )


def is_hit(chunk: Chunk, path: str, phrase: str) -> bool:
    """A retrieved chunk answers a labelled question: it is from the labelled file and holds the phrase
    (whitespace and case aside)."""
    return chunk.path == path and contains(chunk.text, phrase)


def labels(question: dict[str, Any]) -> list[tuple[str, str]]:
    """A labelled question's answers, (file, phrase) each: its own label, then its ``also`` labels."""
    return [(question["file"], question["phrase"])] + [
        (a["file"], a["phrase"]) for a in question.get("also", ())
    ]


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


def contains(text: str, phrase: str) -> bool:
    """``phrase`` is in ``text``, whitespace and case aside."""
    return _normal(phrase) in _normal(text)


def stale_labels(questions: list[dict[str, Any]], documents: dict[str, str]) -> list[str]:
    """What is wrong with the labels of ``questions`` against ``documents`` (path: text): each label whose
    phrase is not in its file (whitespace and case aside), naming the question, the file and the phrase.
    Labels of files not in ``documents`` are not checked."""
    return [
        f"question {q['question']!r}: {phrase!r} is not in {path} (the document changed: relabel it)"
        for q in questions
        for path, phrase in labels(q)
        if path in documents and not contains(documents[path], phrase)
    ]


def found_at(hits: list[Hit], question: dict[str, Any]) -> int | None:
    """The rank (from 1) of the first hit that answers a labelled question by any of its labels, or None."""
    answers = labels(question)
    return next((n for n, h in enumerate(hits, 1) if any(is_hit(h.chunk, f, p) for f, p in answers)), None)
