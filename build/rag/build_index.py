"""Chunk a corpus of Markdown and text files, embed the chunks with the served embedding model, and write the
retriever's FAISS index, chunk metadata and a retrieval report.

Usage: ``python build/rag/build_index.py --corpus "README.md,docs/**/*.md" --tokenizer T --model M
--output DIR``

``--corpus``: comma-separated files, folders (their ``*.md`` and ``*.txt``) or globs, relative to the project
root unless absolute. ``--tokenizer`` and ``--model`` are the ``tokenizer`` and ``minilm_l6`` artifacts of
the text_embedding pipeline: the chunks are tokenized and embedded exactly as the server embeds questions
(``tritonfleet.pipelines.text_embedding.embedding.OnnxEmbedder``, onnxruntime in process). Writes
``index.faiss``, ``chunks.json`` and ``build_report.json`` into ``DIR``. The report has recall@k on
``--questions`` (labelled by file and a phrase of the answer, ``also`` labels for other places that answer it;
a ``half``, tune or held-out): a question counts as found when one of its k best chunks is from a labelled
file and holds its phrase. It gives recall for all questions and for each half, and the misses with what was
retrieved instead. Questions whose file is not in the corpus are left out. A label whose phrase is not in its
file (a stale label: the document changed) or in none of its chunks (cut by a chunk boundary) is reported
(``stale_labels``), naming the question, file and phrase: the documents are free to change, and the labels
follow them when someone measures again. ``--strict-labels`` makes such a label fail the build (exit 1),
as the tests' frozen corpus does (tests/rag/corpus/); an empty corpus always fails.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

from tritonfleet.artifacts import PROJECT_ROOT, BuildOption
from tritonfleet.pipelines.rag.retrieval import (
    Index,
    chunk_document,
    contains,
    found_at,
    is_hit,
    labels,
    stale_labels,
)
from tritonfleet.pipelines.text_embedding.embedding import OnnxEmbedder

CHUNK_TOKENS = 200  # word pieces per chunk at most, [CLS] and [SEP] included: under the model's 256
PASSAGE_TOKENS = 64  # word pieces of a passage's text at most (its heading trail comes on top): docs/rag.md
K = 3


def display_path(path: Path) -> str:
    """The name a source carries: relative to the project root when inside it."""
    try:
        return path.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def recall(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """recall@K of result rows (a labelled question with the rank it was found at, or None), the share
    found first, and the misses."""
    found = [r for r in rows if r["rank"] is not None]
    return {
        "questions": len(rows),
        f"recall_at_{K}": len(found) / len(rows) if rows else None,
        "first": sum(r["rank"] == 1 for r in rows) / len(rows) if rows else None,
        "missed": [
            {k: r[k] for k in ("question", "file", "phrase", "retrieved")} for r in rows if r["rank"] is None
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="files, folders or globs, comma-separated")
    parser.add_argument("--tokenizer", type=Path, required=True, help="the tokenizer model's tokenizer.json")
    parser.add_argument("--model", type=Path, required=True, help="minilm_l6's model.onnx")
    parser.add_argument("--questions", type=Path, help="labelled questions (JSON) for the recall report")
    parser.add_argument("--output", type=Path, required=True, help="the retriever's version folder")
    parser.add_argument("--strict-labels", action="store_true", help="a stale label fails the build")
    args = parser.parse_args()
    start = time.perf_counter()

    files = BuildOption("corpus", "", "").paths(args.corpus)
    embedder = OnnxEmbedder(args.tokenizer, args.model)

    @functools.cache
    def count(text: str) -> int:
        return int(embedder.tokenizer.encode([text]).num_tokens[0])

    chunks = [
        chunk
        for path in files
        for chunk in chunk_document(display_path(path), path.read_text(), count, CHUNK_TOKENS, PASSAGE_TOKENS)
    ]
    if not chunks:
        print(f"error: no text in the corpus {args.corpus!r} ({len(files)} files)", file=sys.stderr)
        return 1
    vectors = embedder.embed([text for c in chunks for text in c.embedded_texts])
    index = Index.build(chunks, vectors)

    report: dict[str, Any] = {
        "corpus": args.corpus,
        "files": [display_path(p) for p in files],
        "chunks": len(chunks),
        "vectors": len(vectors),
        "chunk_tokens": CHUNK_TOKENS,
        "passage_tokens": PASSAGE_TOKENS,
        "chunks_per_file": {display_path(p): sum(c.path == display_path(p) for c in chunks) for p in files},
    }
    stale: list[str] = []
    if args.questions:
        labelled = json.loads(args.questions.read_text())
        asked = [q for q in labelled if q["file"] in report["files"]]
        documents = {display_path(p): p.read_text() for p in files}
        stale += stale_labels(asked, documents)
        stale += [
            f"question {q['question']!r}: {phrase!r} is in {path} but across a chunk boundary (relabel it)"
            for q in asked
            for path, phrase in labels(q)
            if path in documents
            and contains(documents[path], phrase)
            and not any(is_hit(c, path, phrase) for c in chunks)
        ]
        questions = [q["question"] for q in asked]
        results = index.search(embedder.embed(questions), questions, K) if asked else []
        rows = [
            {**q, "rank": found_at(hits, q), "retrieved": [h.chunk.source for h in hits]}
            for q, hits in zip(asked, results, strict=True)
        ]
        report["recall"] = {
            "k": K,
            "left_out": len(labelled) - len(asked),
            **recall(rows),
            "halves": {
                half: recall([r for r in rows if r.get("half") == half]) for half in ("tune", "held-out")
            },
            "results": rows,
        }
    report["stale_labels"] = stale
    report["failures"] = failures = stale if args.strict_labels else []
    report["elapsed_s"] = round(time.perf_counter() - start, 2)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "build_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if failures:
        print("index build FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    index.save(args.output)
    print(
        f"indexed {len(chunks)} chunks ({len(vectors)} vectors), {len(files)} files, {report['elapsed_s']} s"
    )
    for name, part in [("all", report.get("recall")), *report.get("recall", {}).get("halves", {}).items()]:
        if part and part["questions"]:
            found = part["questions"] - len(part["missed"])
            print(f"  recall@{K} {name}: {part[f'recall_at_{K}']:.3f} ({found}/{part['questions']})")
    for label in stale:
        print(f"  stale label: {label}")
    for miss in report.get("recall", {}).get("missed", []):
        print(f"  missed: {miss['question']!r} ({miss['file']}), got {', '.join(miss['retrieved'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
