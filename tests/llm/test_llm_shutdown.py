"""Unloading and stopping the LLM pipeline after a client left mid-generation, and after a stub died: every
model unloads and the server exits instead of waiting out its exit timeout. On servers of their own (the tests
unload models and kill stubs), loading only ``ensemble`` and its steps."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from tests.llm.conftest import inputs, wait_idle
from tests.llm.test_llm_server import CHAT, stream_then_drop
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.server import TritonServer

pytestmark = pytest.mark.server

EXIT_TIMEOUT_EXPIRED = "Exit timeout expired"  # tritonserver gave up waiting for its models
WAIT_S = 30  # a model that unloads does so within seconds; one that hangs waits out the 60 s exit timeout


@contextlib.contextmanager
def ensemble_server(tmp_path: Path) -> Iterator[TritonServer]:
    server = TritonServer.on_free_ports(REPOSITORY, models=["ensemble"], log=tmp_path / "tritonserver.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def state(server: TritonServer, model: str) -> str:
    """The model's state in the repository index: READY, UNLOADING, UNAVAILABLE (unloaded)."""
    index = grpcclient.InferenceServerClient(server.grpc_url).get_model_repository_index(as_json=True)
    return next(m.get("state", "") for m in index["models"] if m["name"] == model)


def stream_errors(server: TritonServer, prompt: str) -> list[str]:
    """Stream a short request through the ensemble until its final response or its error; the errors."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    values = {"text_input": prompt, "max_tokens": 8, "min_tokens": 8, "stream": True}
    client.async_stream_infer("ensemble", inputs("ensemble", values), enable_empty_final_response=True)
    errors = []
    try:
        while True:
            result, error = got.get(timeout=WAIT_S)
            if error is not None:
                errors.append(str(error))
                break
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
    finally:
        client.stop_stream()
    return errors


def test_dropped_stream_lets_the_ensemble_unload_and_the_server_exit(tmp_path: Path) -> None:
    """A client that drops its ensemble stream mid-generation leaves no request in flight: the ensemble
    unloads, and the server stops by itself (exit code 0, not its exit timeout's 1)."""
    with ensemble_server(tmp_path) as server:
        stream_then_drop(server, "ensemble", "grpc")
        wait_idle(server)  # tensorrt_llm stopped generating (the request was cancelled)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        client.unload_model("ensemble", client_timeout=WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while (now := state(server, "ensemble")) != "UNAVAILABLE":
            assert time.monotonic() < deadline, f"ensemble still {now}: a request in flight"
            time.sleep(0.2)
        assert not client.is_model_ready("ensemble")
        assert client.is_model_ready("tensorrt_llm")  # its steps stay loaded
        code = server.stop()
    assert code == 0
    assert EXIT_TIMEOUT_EXPIRED not in (tmp_path / "tritonserver.log").read_text()


@pytest.mark.parametrize("model", ["tensorrt_llm", "postprocessing"])
def test_server_with_a_dead_stub_stops_without_waiting_out_its_exit_timeout(
    tmp_path: Path, model: str
) -> None:
    """After kill -9 of a step's stub and a request that met it (Triton then cannot unload tensorrt_llm, nor
    finish the ensemble request whose postprocessing failed mid-stream), stop() ends the server once its stubs
    stop exiting, and leaves no process nor shared memory behind."""
    with ensemble_server(tmp_path) as server:
        [(pid, region)] = [(p, r) for p, (m, r) in server.stub_models().items() if m == model]
        regions = server.shm_regions()
        os.kill(pid, signal.SIGKILL)
        errors = stream_errors(server, CHAT.format("Say hi."))
        assert len(errors) == 1 and f"Stub process '{model}_0_0' is not healthy" in errors[0]
        server.stop()
        assert not server.session_processes()
    assert region in regions and not any(r.exists() for r in regions)
    assert EXIT_TIMEOUT_EXPIRED not in (tmp_path / "tritonserver.log").read_text()
