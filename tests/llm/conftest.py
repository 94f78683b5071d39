"""The LLM tests run against the session's tritonserver (tests/conftest.py), which serves the whole
repository: `ensemble`, `tensorrt_llm_bls` and their steps next to the rest of the fleet."""

from __future__ import annotations

import time
import urllib.request

import pytest

from tritonfleet.server import TritonServer


@pytest.fixture(scope="session")
def llm_server(server: TritonServer) -> TritonServer:
    return server


def metric(server: TritonServer, name: str) -> float:
    """The value of one metric on the server's metrics port (the first series of that name)."""
    text = urllib.request.urlopen(server.metrics_url).read().decode()
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name)))


def wait_idle(server: TritonServer, seconds: float = 10) -> None:
    """Wait until no sequence holds a slot of the CPU tensorrt_llm; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while metric(server, "tritonfleet_llm_active_sequences") > 0:
        assert time.monotonic() < deadline, "a stopped or dropped request still holds its slot"
        time.sleep(0.02)
