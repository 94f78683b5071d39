"""rag: questions about a corpus (this project's README and docs by default) answered by the fleet's LLM from
the nearest chunks, with their sources.

``rag`` (an ensemble) embeds the question with the text_embedding models, ``retriever`` searches the FAISS
index that ``build/rag/build_index.py`` writes and builds the prompt, and the LLM ensemble's steps stream
the answer; the sources pass through the decoupled step to the first response (docs/rag.md). It speaks the
LLM ensemble's interface plus ``num_sources`` in and ``sources`` out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tritonfleet.artifacts import BuildOption, Recipe
from tritonfleet.clients import rag as client
from tritonfleet.pipelines import OpenAIModel, Pipeline, Playground, Slo
from tritonfleet.pipelines.rag import commands, interface

if TYPE_CHECKING:
    from tritonfleet.clients import FleetClient

CORPUS = BuildOption(
    "corpus",
    default="README.md,docs/**/*.md",
    help="rag: documents to index (comma-separated files, folders of *.md/*.txt, globs)",
    files=True,
)


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
    infer=commands.INFER,
    probe=_probe,
    requires=("faiss-cpu==1.15.1", "snowballstemmer==3.1.1"),  # its recipe imports them too
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
