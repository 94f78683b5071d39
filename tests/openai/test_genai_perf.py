"""genai-perf's OpenAI mode (``--endpoint-type chat``, streaming) against /v1: what the benchmark runs."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tests.openai.conftest import CHAT_MODEL
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.bench.llm import genai_perf_environment, genai_perf_venv
from tritonfleet.bench.openai import genai_perf_command, measure
from tritonfleet.openai import OpenAIServer


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
