"""tritonfleet.clients' LLM helpers against the real server: HTTP and gRPC, sync and asyncio, streaming and
one response, and `fleet infer llm`."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tritonfleet.clients import AsyncFleetClient, FleetClient
from tritonfleet.server import TritonServer

PROMPT = "Name three primary colors."  # SmolLM2-135M answers it well through its chat template


def url(server: TritonServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_generate_and_stream_agree(llm_server: TritonServer, protocol: str) -> None:
    with FleetClient(url(llm_server, protocol), protocol=protocol) as fleet:
        whole = fleet.generate(PROMPT, max_tokens=24)
        pieces = list(fleet.stream(PROMPT, max_tokens=24))
    assert "Red" in whole and "Blue" in whole
    assert len(pieces) > 3  # it really streamed
    assert "".join(pieces) == whole  # greedy: the same text either way


def test_sampling_parameters_and_stop_words(llm_server: TritonServer) -> None:
    with FleetClient(llm_server.grpc_url, protocol="grpc") as fleet:
        sampled = [fleet.generate(PROMPT, 16, temperature=1.0, top_k=50, seed=7) for _ in range(2)]
        stopped = fleet.generate(PROMPT, 24, stop_words=["Blue"])
        with pytest.raises(TypeError, match="unknown sampling parameter"):
            fleet.generate(PROMPT, 8, temprature=0.5)
    assert sampled[0] == sampled[1]  # same seed, same text
    assert stopped.endswith("Blue") and "Blue" not in stopped[:-4] and "Yellow" not in stopped


def test_asyncio_generate_and_stream(llm_server: TritonServer) -> None:
    async def run() -> tuple[str, list[str]]:
        async with AsyncFleetClient(llm_server.grpc_url, protocol="grpc") as fleet:
            whole = await fleet.generate(PROMPT, max_tokens=16)
            pieces = [p async for p in fleet.stream(PROMPT, max_tokens=16)]
            return whole, pieces

    whole, pieces = asyncio.run(run())
    assert "Red" in whole and "".join(pieces) == whole


def test_fleet_infer_llm(llm_server: TritonServer) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonfleet.cli",
            "infer",
            "llm",
            PROMPT,
            "--max-tokens",
            "24",
            "--url",
            llm_server.grpc_url,
            "--protocol",
            "grpc",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Red" in out and "Blue" in out
