"""The LLM tests run against the session's tritonserver (tests/conftest.py), which serves the whole
repository: `ensemble`, `tensorrt_llm_bls` and their steps next to the rest of the fleet."""

from __future__ import annotations

import pytest

from tritonfleet.server import TritonServer


@pytest.fixture(scope="session")
def llm_server(server: TritonServer) -> TritonServer:
    return server
