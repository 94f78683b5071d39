"""Retrieval for the ``rag`` pipeline: Markdown chunking, the FAISS index, the prompt with numbered sources.

The build (``build/rag/build_index.py``) chunks the corpus and embeds the chunks with the same tokenizer
and ONNX model the server runs (``tritonfleet.embedding.OnnxEmbedder``); the served ``retriever`` model
loads the :class:`Index` and builds the prompt with :func:`prompt`. Search is hybrid: the dense ranking
(cosine of the question's embedding, FAISS) and a BM25 ranking of the question's words are fused by
reciprocal rank, because technical questions often hinge on one rare word (a flag, a file
name) that a small sentence-embedding model blurs. Chunks follow the Markdown structure:
a section (a heading and what follows it, up to the next heading) is one chunk when it fits the embedding
model's limit, else its paragraphs are packed into chunks that fit; each chunk is embedded with its
heading trail ("tritonfleet > Quick start") in front, which says what the text is about.
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
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al.): 1 / (60 + rank) from each ranking
DENSE_CANDIDATES = 100


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``path#number`` names it (numbers count from 1 within the file)."""

    path: str
    number: int
    heading: str  # the heading trail, "Title > Section > Subsection"
    text: str

    @property
    def source(self) -> str:
        return f"{self.path}#{self.number}"

    @property
    def embedded_text(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text


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
    """``text`` in pieces of at most ``limit`` tokens, cut at line ends, else between words."""
    if count(text) <= limit:
        return [text]
    for sep in ("\n", " "):
        parts = text.split(sep)
        if len(parts) > 1:
            pieces, current = [], ""
            for part in parts:
                candidate = f"{current}{sep}{part}" if current else part
                if current and count(candidate) > limit:
                    pieces.append(current)
                    current = part
                else:
                    current = candidate
            pieces.append(current)
            return [p for piece in pieces for p in _split(piece, count, limit)]
    return [text]  # one word longer than the limit: the tokenizer truncates it


def chunk_document(path: str, text: str, count: Callable[[str], int], limit: int) -> list[Chunk]:
    """Chunks of a Markdown or plain-text document; ``count`` gives a text's tokens, ``limit`` the most a
    chunk may embed (heading trail included)."""
    chunks: list[Chunk] = []
    for heading, lines in _sections(text):
        room = limit - count(heading)
        current = ""
        for block in (b for b in _blocks(lines) for b in _split(b, count, room)):
            candidate = f"{current}\n\n{block}" if current else block
            if current and count(candidate) > room:
                chunks.append(Chunk(path, len(chunks) + 1, heading, current))
                current = block
            else:
                current = candidate
        if current.strip():
            chunks.append(Chunk(path, len(chunks) + 1, heading, current))
    return chunks


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # cosine similarity to the question


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
    """The chunks of a corpus, a FAISS inner-product index of their unit-length embeddings, and BM25."""

    def __init__(self, index: object, chunks: list[Chunk]) -> None:
        self.index = index
        self.chunks = chunks
        self.bm25 = Bm25([c.embedded_text for c in chunks])

    @classmethod
    def build(cls, chunks: list[Chunk], embeddings: np.ndarray) -> Index:
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

        chunks = [Chunk(**c) for c in json.loads((folder / CHUNKS_FILE).read_text())]
        index = faiss.read_index(str(folder / INDEX_FILE))
        if index.ntotal != len(chunks):
            raise ValueError(f"{folder}: {index.ntotal} vectors for {len(chunks)} chunks")
        return cls(index, chunks)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def search(self, embeddings: np.ndarray, questions: list[str], k: int) -> list[list[Hit]]:
        """The ``k`` best chunks for each question (its embedding and its text), best first: the dense
        and the BM25 rankings fused by reciprocal rank. A hit's score is its cosine similarity."""
        candidates = min(DENSE_CANDIDATES, len(self.chunks))
        cosines, ids = self.index.search(np.ascontiguousarray(embeddings, dtype=np.float32), candidates)
        results = []
        for question, row_cosines, row_ids in zip(questions, cosines, ids, strict=True):
            fused = dict.fromkeys(range(len(self.chunks)), 0.0)
            cosine = {}
            for rank, (i, c) in enumerate(zip(row_ids, row_cosines, strict=True)):
                if i >= 0:
                    fused[int(i)] += 1 / (RRF_K + rank)
                    cosine[int(i)] = float(c)
            lexical = self.bm25.scores(question)
            for rank, i in enumerate(np.argsort(-lexical, kind="stable")):
                if lexical[i] > 0:
                    fused[int(i)] += 1 / (RRF_K + rank)
            best = sorted(fused, key=lambda i: -fused[i])[:k]
            results.append([Hit(self.chunks[i], cosine.get(i, 0.0)) for i in best])
        return results


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
    normal = " ".join(phrase.split()).lower()
    return chunk.path == path and normal in " ".join(chunk.text.split()).lower()
