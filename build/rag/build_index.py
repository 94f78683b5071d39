"""Chunk a corpus of Markdown and text files, embed the chunks with the served embedding model, and write the
retriever's FAISS index, chunk metadata and a retrieval report.

Usage: ``python build/rag/build_index.py --corpus "README.md,docs/*.md" --tokenizer T --model M --output DIR``

``--corpus``: comma-separated files, folders (their ``*.md`` and ``*.txt``) or globs, relative to the project
root unless absolute. ``--tokenizer`` and ``--model`` are the ``tokenizer`` and ``minilm_l6`` artifacts of
the text_embedding pipeline: the chunks are tokenized and embedded exactly as the server embeds questions
(``tritonfleet.embedding.OnnxEmbedder``, onnxruntime in process). Writes ``index.faiss``, ``chunks.json``
and ``build_report.json`` into ``DIR``. The report has recall@k on ``--questions`` (labelled by file and a
phrase of the answer): a question counts as found when one of its k nearest chunks is from that file and
holds the phrase. Labels whose file is not in the corpus are left out; a phrase that is in none of its
file's chunks is a labelling error and fails the build (exit 1), as does an empty corpus.
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
from tritonfleet.embedding import OnnxEmbedder
from tritonfleet.rag import Index, chunk_document, is_hit

CHUNK_TOKENS = 200  # word pieces per chunk at most, [CLS] and [SEP] included: under the model's 256
K = 3


def display_path(path: Path) -> str:
    """The name a source carries: relative to the project root when inside it."""
    try:
        return path.relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="files, folders or globs, comma-separated")
    parser.add_argument("--tokenizer", type=Path, required=True, help="the tokenizer model's tokenizer.json")
    parser.add_argument("--model", type=Path, required=True, help="minilm_l6's model.onnx")
    parser.add_argument("--questions", type=Path, help="labelled questions (JSON) for the recall report")
    parser.add_argument("--output", type=Path, required=True, help="the retriever's version folder")
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
        for chunk in chunk_document(display_path(path), path.read_text(), count, CHUNK_TOKENS)
    ]
    if not chunks:
        print(f"error: no text in the corpus {args.corpus!r} ({len(files)} files)", file=sys.stderr)
        return 1
    vectors = embedder.embed([c.embedded_text for c in chunks])
    index = Index.build(chunks, vectors)

    report: dict[str, Any] = {
        "corpus": args.corpus,
        "files": [display_path(p) for p in files],
        "chunks": len(chunks),
        "chunk_tokens": CHUNK_TOKENS,
        "chunks_per_file": {display_path(p): sum(c.path == display_path(p) for c in chunks) for p in files},
    }
    failures: list[str] = []
    if args.questions:
        labelled = json.loads(args.questions.read_text())
        asked = [q for q in labelled if q["file"] in report["files"]]
        for q in asked:
            if not any(is_hit(c, q["file"], q["phrase"]) for c in chunks):
                failures.append(f"label of {q['question']!r}: {q['phrase']!r} is in no chunk of {q['file']}")
        questions = [q["question"] for q in asked]
        results = index.search(embedder.embed(questions), questions, K) if asked else []
        rows = []
        for q, hits in zip(asked, results, strict=True):
            rank = next((n for n, h in enumerate(hits, 1) if is_hit(h.chunk, q["file"], q["phrase"])), None)
            rows.append({**q, "rank": rank, "retrieved": [h.chunk.source for h in hits]})
        found = sum(r["rank"] is not None for r in rows)
        report["recall"] = {
            "k": K,
            "questions": len(rows),
            "left_out": len(labelled) - len(asked),
            f"recall_at_{K}": found / len(rows) if rows else None,
            "first": sum(r["rank"] == 1 for r in rows) / len(rows) if rows else None,
            "missed": [r for r in rows if r["rank"] is None],
            "results": rows,
        }
    report["failures"] = failures
    report["elapsed_s"] = round(time.perf_counter() - start, 2)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "build_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    if failures:
        print("index build FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    index.save(args.output)
    recall = report.get("recall", {})
    summary = f", recall@{K} {recall[f'recall_at_{K}']:.2f} on {recall['questions']}" if recall else ""
    print(f"indexed {len(chunks)} chunks of {len(files)} files{summary}, {report['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
