"""The benchmark's load generators against /v1: genai-perf's OpenAI mode (``--endpoint-type chat``,
streaming), and the Python load generator that ``fleet bench openai`` runs on /v1 and on the ensemble."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tests.openai.conftest import CHAT_MODEL
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.openai import OpenAIServer
from tritonfleet.pipelines.llm.bench.served import genai_perf_environment, genai_perf_venv
from tritonfleet.server import TritonServer
from tritonfleet.tools.bench import loadgen
from tritonfleet.tools.bench.openai import bench_prompt, genai_perf_command, measure, measure_loadgen

TOKENIZER = (REPOSITORY / "preprocessing" / "1" / "tokenizer").resolve()


def test_genai_perf_chat_streaming(openai_server: OpenAIServer, tmp_path: Path) -> None:
    genai_perf = genai_perf_venv(Console())  # created on first use (~1 minute), then cached
    cmd = genai_perf_command(
        genai_perf,
        side="openai",
        url=f"localhost:{openai_server.port}",
        model=CHAT_MODEL,
        concurrency=2,
        requests=4,
        input_tokens=32,
        output_tokens=12,
        tokenizer=(REPOSITORY / "preprocessing" / "1" / "tokenizer").resolve(),
        artifact_dir=tmp_path / "genai-perf",
    )
    point = measure(cmd, genai_perf_environment(genai_perf), tmp_path / "genai-perf", "openai", 2, None)
    assert point.request_count == 4
    # min_tokens = max_tokens: every answer has exactly the 12 tokens asked for, as genai-perf counts them
    assert point.output_tokens_avg == 12
    assert 0 < point.ttft_p50_ms <= point.latency_p50_ms


def test_load_generator_on_both_sides(openai_server: OpenAIServer, server: TritonServer) -> None:
    prompt = bench_prompt(TOKENIZER, 32)
    sides = {
        "openai": loadgen.openai_stream(openai_server.url, CHAT_MODEL, prompt, 12),
        "ensemble": loadgen.ensemble_stream(server.grpc_url, prompt, 12),
    }
    for side, stream in sides.items():
        point = measure_loadgen(stream, side, 2, 4, TOKENIZER, None)
        assert point.request_count == 4 and point.output_tokens_avg == 12, (side, point)
        assert 0 < point.ttft_p50_ms <= point.latency_p50_ms
