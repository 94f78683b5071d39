"""llm: SmolLM2-135M-Instruct behind TensorRT-LLM's inflight_batcher_llm interface.

``ensemble`` streams (preprocessing -> tensorrt_llm -> postprocessing), ``tensorrt_llm_bls`` answers once,
``tensorrt_llm`` takes token ids and TensorRT-LLM's stop request. On the CPU ``tensorrt_llm`` runs the
onnxruntime-genai engine that ``build/llm/cpu_engine.py`` compiles; on GPU the TensorRT-LLM engine that the
image's entrypoint builds with ``build/llm/trtllm_engine.py``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tritonfleet.artifacts import Recipe
from tritonfleet.clients import llm as client
from tritonfleet.pipelines import Command, OpenAIModel, Pipeline, Playground, Slo, ints

if TYPE_CHECKING:
    from rich.console import Console

    from tritonfleet.clients import FleetClient

TOKENIZER_OUTPUTS = tuple(
    f"{model}/1/tokenizer/{name}"
    for model in ("preprocessing", "postprocessing")
    for name in ("tokenizer.json", "tokenizer_config.json")
)


def _infer_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", nargs="+", help="the prompt (the user's message in the chat template)")
    p.add_argument("--max-tokens", type=int, default=128, help="tokens to generate at most")
    p.add_argument("--no-stream", action="store_true", help="one response instead of streaming")


def _infer(args: argparse.Namespace, console: Console) -> int:
    from tritonfleet.clients import FleetClient

    prompt = " ".join(args.prompt)
    with FleetClient(args.url, protocol=args.protocol) as fleet:
        if args.no_stream:
            print(fleet.generate(prompt, args.max_tokens))
        else:
            for piece in fleet.stream(prompt, args.max_tokens):
                print(piece, end="", flush=True)
            print()
    return 0


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=ints, default=[1, 4, 8])
    p.add_argument("--requests", type=int, default=16, help="requests per level")


def _bench(args: argparse.Namespace, console: Console) -> int:
    from tritonfleet.pipelines.llm.bench import run_llm_bench

    path = run_llm_bench(
        args.repository,
        concurrency=args.concurrency,
        url=args.url,
        output=args.output,
        console=console,
        requests_per_level=args.requests,
    )
    console.print(f"[green]✓[/] report: {path}")
    return 0


def _probe(fleet: FleetClient) -> None:
    """Greedy decoding answers a question the model knows, through tensorrt_llm_bls."""
    text = fleet.generate("Name three primary colors.", max_tokens=16)
    assert "Red" in text or "red" in text, text


PIPELINE = Pipeline(
    name="llm",
    summary="SmolLM2-135M-Instruct chat model, TensorRT-LLM's interface (streaming and one response)",
    public=(client.STREAM_MODEL, client.UNARY_MODEL, client.STOP_MODEL),
    recipes=(
        # Keeps its own content-hash cache (checkpoint, engine) and hard-links into the repository.
        Recipe(
            script="build/llm/cpu_engine.py",
            outputs=(
                "tensorrt_llm/1/cpu_engine/engine.json",
                "tensorrt_llm/1/cpu_engine/genai_config.json",
                *TOKENIZER_OUTPUTS,
            ),
            args=("--repository", "{repository}", "--precision", "int8"),
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
    helpers=(client.generate,),
    infer=Command("generate text (streams by default)", _infer_arguments, _infer),
    bench=Command("genai-perf streaming vs the in-process engine (and llama.cpp)", _bench_arguments, _bench),
    probe=_probe,
    requires=("tokenizers==0.23.3", "jinja2>=3.1"),
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
