"""llm: SmolLM2-135M-Instruct behind TensorRT-LLM's inflight_batcher_llm interface.

``ensemble`` streams (preprocessing -> tensorrt_llm -> postprocessing), ``tensorrt_llm_bls`` answers once,
``tensorrt_llm`` takes token ids and TensorRT-LLM's stop request. On the CPU ``tensorrt_llm`` runs the
OpenVINO engine that ``build/llm/cpu_engine.py`` exports (continuous batching, paged KV cache); on GPU the
TensorRT-LLM engine that the image's entrypoint builds with ``build/llm/trtllm_engine.py``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tritonfleet.artifacts import BuildOption, Recipe
from tritonfleet.clients import llm as client
from tritonfleet.pipelines import Command, OpenAIModel, Pipeline, ints

if TYPE_CHECKING:
    from rich.console import Console

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
    p.add_argument(
        "--engines",
        help="compare CPU engines side by side instead (openvino, genai, ortgenai, llamaserver; "
        "name:key=value,... sets an engine's parameters), e.g. --engines openvino,genai,ortgenai,llamaserver",
    )
    p.add_argument("--levels", type=ints, default=[1, 8, 16, 32], help="--engines: concurrent streams")
    p.add_argument("--mixed", type=int, default=48, help="--engines: requests of the mixed set (0: none)")
    p.add_argument("--prefix-trials", type=int, default=3, help="--engines: prefix-cache probes (0: none)")
    p.add_argument(
        "--build-peer",
        action="store_true",
        help="compile llama.cpp's llama-server into the build cache (once, ~25 min on 2 cores) and stop",
    )


def _bench(args: argparse.Namespace, console: Console) -> int:
    from tritonfleet.pipelines.llm import engine_bench, peer
    from tritonfleet.pipelines.llm.bench import run_llm_bench

    if args.build_peer:
        console.print(f"[green]✓[/] {peer.build(console.print)}")
        return 0
    if args.engines:
        work = engine_bench.Workloads(
            levels=tuple(args.levels), mixed=args.mixed, prefix_trials=args.prefix_trials
        )
        specs = engine_bench.split_specs(args.engines)
        path = engine_bench.run_engine_bench(args.repository, specs, args.output, console, work)
        console.print(f"[green]✓[/] report: {path}")
        return 0
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
    helpers=(client.generate,),
    infer=Command("generate text (streams by default)", _infer_arguments, _infer),
    bench=Command(
        "genai-perf streaming vs the in-process engine (and llama.cpp); --engines: CPU engines side by side",
        _bench_arguments,
        _bench,
    ),
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
)
