"""The fleet's real demands, worked out once (ONNX shape inference and the LLM's shapes take seconds)."""

from __future__ import annotations

import pytest

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.plan import memory
from tritonfleet.repository import Repository

NAMED = ("1xL4", "1xA10G", "1xA100-80GB", "2xA100-40GB", "8xH100-80GB")


@pytest.fixture(scope="session")
def fleet() -> list[memory.Demand]:
    return memory.fleet(Repository(REPOSITORY))


@pytest.fixture(scope="session")
def fleet_tp3() -> list[memory.Demand]:
    return memory.fleet(Repository(REPOSITORY), {"tensorrt_llm": 3})
