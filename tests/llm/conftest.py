"""The LLM tests run against the session's tritonserver (tests/conftest.py), which serves the whole
repository: `ensemble`, `tensorrt_llm_bls` and their steps next to the rest of the fleet."""

from __future__ import annotations

import functools
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import json_format

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.clients.call import Call, config_datatypes, infer_inputs
from tritonfleet.repository import Repository
from tritonfleet.server import TritonServer


@pytest.fixture(scope="session")
def llm_server(server: TritonServer) -> TritonServer:
    return server


def metric(server: TritonServer, name: str) -> float:
    """The value of one metric on the server's metrics port (the first series of that name)."""
    text = urllib.request.urlopen(server.metrics_url).read().decode()
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name)))


def wait_idle(server: TritonServer, seconds: float = 60) -> None:
    """Wait until no sequence holds a slot of the CPU tensorrt_llm; fail after ``seconds`` (a hang: tests
    assert what the stopped sequences generated, not how long stopping took)."""
    deadline = time.monotonic() + seconds
    while metric(server, "tritonfleet_llm_active_sequences") > 0:
        assert time.monotonic() < deadline, "a stopped or dropped request still holds its slot"
        time.sleep(0.02)


@functools.cache
def datatypes(model: str) -> dict[str, str]:
    """Input name -> Triton data type, from the model's CPU config in the repository."""
    config = json_format.MessageToDict(Repository(REPOSITORY).config(model), preserving_proto_field_name=True)
    return config_datatypes(config)


def inputs(model: str, values: dict[str, Any], api: Any = grpcclient) -> list[Any]:
    """tritonclient inputs for ``model`` with the data types of its config. A str, number, bool or list is one
    row (shape ``[1, 1]`` or ``[1, n]``); a numpy array is sent as it is shaped (a batch, say)."""
    shaped = {
        n: v if isinstance(v, np.ndarray) else [v if isinstance(v, list) else [v]] for n, v in values.items()
    }
    return infer_inputs(api, Call(model, shaped, parse=lambda r: r), datatypes(model))
