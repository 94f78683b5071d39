"""rag: questions about a corpus (this project's README and docs by default) answered by the fleet's LLM from
the nearest chunks, with their sources.

``rag`` (an ensemble) embeds the question with the text_embedding models, ``retriever`` searches the FAISS
index that ``build/rag/build_index.py`` writes and builds the prompt, and the LLM ensemble's steps stream
the answer; the sources pass through the decoupled step to the first response (docs/rag.md). It speaks the
LLM ensemble's interface plus ``num_sources`` in and ``sources`` out.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from tritonfleet.artifacts import BuildOption, Recipe
from tritonfleet.clients import rag as client
from tritonfleet.pipelines import Command, OpenAIModel, Pipeline, Playground, Slo
from tritonfleet.pipelines.rag import interface

if TYPE_CHECKING:
    from rich.console import Console

    from tritonfleet.clients import FleetClient

CORPUS = BuildOption(
    "corpus",
    default="README.md,docs/**/*.md",
    help="rag: documents to index (comma-separated files, folders of *.md/*.txt, globs)",
    files=True,
)


def _infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", nargs="+", help="the question")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens to generate at most")
    p.add_argument("--num-sources", type=int, help="chunks to retrieve (default: the retriever's, 3)")
    p.add_argument("--no-stream", action="store_true", help="one response instead of streaming")


def _infer(args: argparse.Namespace, console: Console) -> int:
    from tritonfleet.clients import FleetClient

    question = " ".join(args.question)
    with FleetClient(args.url, protocol=args.protocol) as fleet:
        if args.no_stream or args.protocol == "http":
            answer = client.ask(fleet, question, args.max_tokens, num_sources=args.num_sources)
            console.print(f"[dim]sources: {', '.join(answer.sources)}[/]")
            print(answer.text)
            return 0
        for piece in client.stream(fleet, question, args.max_tokens, num_sources=args.num_sources):
            if piece.sources:
                console.print(f"[dim]sources: {', '.join(piece.sources)}[/]")
            print(piece.text, end="", flush=True)
        print()
    return 0


SOURCE = re.compile(r".+#[1-9][0-9]*")


def _probe(fleet: FleetClient) -> None:
    """A question gets sources (``path#chunk``, as many as asked) and an answer, over either protocol."""
    answer = client.ask(fleet, "How do I serve the fleet on a laptop?", max_tokens=8, num_sources=2)
    assert len(answer.sources) == 2 and all(SOURCE.fullmatch(s) for s in answer.sources), answer
    assert answer.text.strip(), answer


PIPELINE = Pipeline(
    name="rag",
    summary="Questions about the project's docs: MiniLM + FAISS retrieval, the LLM's answer with sources",
    public=(client.MODEL,),
    recipes=(
        Recipe(
            script="build/rag/build_index.py",
            outputs=("retriever/1/index.faiss", "retriever/1/chunks.json", "retriever/1/build_report.json"),
            args=(
                "--corpus",
                "{corpus}",
                "--tokenizer",
                "{repository}/tokenizer/1/tokenizer.json",
                "--model",
                "{repository}/minilm_l6/1/model.onnx",
                "--questions",
                "build/rag/questions.json",
                "--output",
                "{output}/retriever/1",
            ),
            sources=(
                "tritonfleet/pipelines/rag/retrieval.py",
                "tritonfleet/pipelines/text_embedding/embedding.py",
                "build/rag/questions.json",
            ),
            packages=("faiss-cpu", "onnxruntime", "tokenizers", "numpy", "snowballstemmer"),
            needs=("tokenizer/1/tokenizer.json", "minilm_l6/1/model.onnx"),
            options=(CORPUS,),
        ),
    ),
    infer=Command(
        "ask a question about the corpus (streams the answer, prints the sources)", _infer_arguments, _infer
    ),
    probe=_probe,
    requires=("faiss-cpu==1.15.1", "snowballstemmer==3.1.1"),
    build_requires=("faiss-cpu==1.15.1", "snowballstemmer==3.1.1"),
    openai=(
        OpenAIModel(
            id="rag",
            kind="chat",
            unary_model=client.MODEL,  # decoupled: one response via a gRPC stream or HTTP /generate
            stream_model=client.MODEL,
            tokenizer="preprocessing",
            engine="tensorrt_llm",
            prompt="question",  # the question as it is: the retriever builds the prompt around the sources
            extra_inputs=("num_sources",),
            extra_outputs=(client.SOURCES,),
        ),
    ),
    slo=Slo(p99_seconds=60.0),  # retrieval and a whole generation
    # The sources' passages: the retriever's chunks.json.
    playground=Playground("chat", params={"passages": interface.RETRIEVER.name}),
)
