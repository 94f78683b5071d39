#!/usr/bin/env python3
"""Benchmark an OpenAI-compatible chat endpoint with genai-perf or, with --loadgen, the Python load generator
of `fleet bench openai` (streaming, fixed prompt and output lengths):
requests/s, latency p50/p95/p99, time to first token, output tokens/s and the memory the serving processes
use (when the server runs on this machine). Writes JSON + Markdown under --output.

    scripts/benchmark_inference.py --endpoint http://localhost:9000/v1/chat/completions \\
        --model smollm2-135m-instruct --concurrency 32 --requests 1000

`fleet bench openai` runs it at several concurrencies beside the gRPC ensemble and llama.cpp.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.tools.bench.openai import benchmark_endpoint


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--endpoint", required=True, help="e.g. http://localhost:9000/v1/chat/completions")
    p.add_argument("--model", required=True)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--input-tokens", type=int, default=128)
    p.add_argument("--output-tokens", type=int, default=64)
    p.add_argument("--tokenizer", type=Path, default=REPOSITORY / "preprocessing" / "1" / "tokenizer",
                   help="a local tokenizer folder (genai-perf counts tokens with it)")  # fmt: skip
    p.add_argument("--output", type=Path, default=Path("reports"))
    p.add_argument("--loadgen", action="store_true", help="the Python load generator instead of genai-perf")
    args = p.parse_args()
    console = Console()
    path = benchmark_endpoint(
        args.endpoint,
        args.model,
        concurrency=args.concurrency,
        requests=args.requests,
        output=args.output,
        console=console,
        tokenizer=args.tokenizer.resolve(),
        input_tokens=args.input_tokens,
        output_tokens=args.output_tokens,
        loadgen_only=args.loadgen,
    )
    console.print(path.with_suffix(".md").read_text())
    console.print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
