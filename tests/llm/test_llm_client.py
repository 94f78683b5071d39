"""tritonfleet.clients' LLM helpers against the real server: HTTP and gRPC, sync and asyncio, streaming and
one response, and `fleet infer llm`."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time

import pytest

from tests.llm.conftest import metric, wait_idle
from tests.llm.rounding import CONFIDENT_QUESTIONS
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


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_generate_a_batch(llm_server: TritonServer, protocol: str) -> None:
    """A list of prompts is one batched request; each text is the prompt's alone (prompts of equal length in
    tokens whose answers are confident: tests/llm/rounding.py)."""
    questions = list(CONFIDENT_QUESTIONS[:2])
    with FleetClient(url(llm_server, protocol), protocol=protocol) as fleet:
        alone = [fleet.generate(q, max_tokens=16) for q in questions]
        assert fleet.generate(questions, max_tokens=16) == alone
    assert alone[0] != alone[1] and all(alone)  # each row answered its own prompt


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


@pytest.mark.parametrize("how", ["http", "grpc", "asyncio"])
def test_leaving_a_stream_early_stops_its_generation(llm_server: TritonServer, how: str) -> None:
    """A reader that leaves after three pieces of a 1000-token stream (~10 s of generation): the client stops
    the generation (a stop request: Triton 24.10 does not cancel the ensemble's running step)."""
    tokens = "tritonfleet_llm_generated_tokens_total"
    before = metric(llm_server, tokens)
    long = {"max_tokens": 1000, "min_tokens": 1000}
    if how == "asyncio":

        async def read_three() -> None:
            async with (
                AsyncFleetClient(llm_server.grpc_url, protocol="grpc") as fleet,
                contextlib.aclosing(fleet.stream(PROMPT, **long)) as pieces,
            ):
                async for n, _ in _aenumerate(pieces):
                    if n == 2:
                        break

        asyncio.run(read_three())
    else:
        with FleetClient(url(llm_server, how), protocol=how) as fleet:
            pieces = fleet.stream(PROMPT, **long)
            for n, _ in enumerate(pieces):
                if n == 2:
                    break
            pieces.close()
    wait_idle(llm_server)
    generated = metric(llm_server, tokens)
    time.sleep(0.5)
    assert metric(llm_server, tokens) == generated < before + 100  # stopped, far short of its 1000 tokens


async def _aenumerate(items):  # type: ignore[no-untyped-def]
    n = 0
    async for item in items:
        yield n, item
        n += 1


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
