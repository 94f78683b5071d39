"""`fleet serve`: the launcher a user runs, stopped the way a user stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import copy_repository
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.fleet import internal_url
from tritonfleet.pipelines.loading import missing_artifacts
from tritonfleet.server import SHM_PREFIX, STUB_NAME, TritonServer, free_port, live_processes

pytestmark = pytest.mark.server


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def stub_pids(fleet_pid: int) -> set[int]:
    """The Python stubs of the tritonserver that ``fleet_pid`` started (other servers on the machine, other
    tests' or other users', are not ours to count)."""
    return {
        pid
        for pid, p in live_processes().items()
        if STUB_NAME.startswith(p.comm) and _parent(_parent(pid)) == fleet_pid
    }


def shm_regions(pids: set[int]) -> set[Path]:
    """The shared memory regions these processes have mapped."""
    regions = set()
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        regions |= {Path(line.split(maxsplit=5)[-1]) for line in maps.splitlines() if SHM_PREFIX in line}
    return regions


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_loads_pipeline_with_its_steps_and_stops_cleanly(stop_signal: int) -> None:
    ports = [free_port() for _ in range(4)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tritonfleet.cli",
            "serve",
            "--models",
            "image_classifier",
            "--http-port",
            str(ports[0]),
            "--grpc-port",
            str(ports[1]),
            "--metrics-port",
            str(ports[2]),
            "--openai-port",
            str(ports[3]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        output = "".join(lines)
        assert f"localhost:{ports[0]}" in output and f"localhost:{ports[1]}" in output, output
        public = httpclient.InferenceServerClient(f"localhost:{ports[0]}")  # the front door
        assert public.get_model_config("image_classifier")["name"] == "image_classifier"
        with pytest.raises(InferenceServerException, match="403"):
            public.get_model_repository_index()  # an admin API
        public.close()
        internal = internal_url(f"localhost:{ports[0]}")
        assert internal != f"localhost:{ports[0]}"  # tritonserver's own port, 127.0.0.1 only
        client = httpclient.InferenceServerClient(internal)
        loaded = {m["name"] for m in client.get_model_repository_index() if m.get("state") == "READY"}
        client.close()
        # The ensemble and its two steps, nothing else from the repository.
        assert loaded == {"image_classifier", "image_preprocess", "efficientnet_lite0"}
        # /v1 runs beside it, its URL printed; it lists the OpenAI models loaded (no LLM here: none)
        v1 = f"http://localhost:{ports[3]}/v1"
        assert v1 in output, output
        with urllib.request.urlopen(f"{v1}/models", timeout=10) as r:
            assert json.loads(r.read()) == {"object": "list", "data": []}
        # a declared model whose pipeline is not loaded: 503 with a Retry-After, in OpenAI's shape
        with pytest.raises(urllib.error.HTTPError) as not_loaded:
            urllib.request.urlopen(f"{v1}/models/smollm2-135m-instruct", timeout=10)
        assert not_loaded.value.code == 503 and int(not_loaded.value.headers["Retry-After"]) >= 1
        assert json.loads(not_loaded.value.read())["error"]["code"] == "model_not_ready"
        from openai import OpenAI

        # as README calls it: the openai client always sends a key, which no keys configured lets through
        assert OpenAI(base_url=v1, api_key="none", max_retries=0).models.list().data == []
        started = stub_pids(proc.pid)
        assert len(started) >= 2  # image_preprocess + the onnxruntime Python-based backend
        shm = shm_regions(started)
        assert shm  # one region a stub
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while started & set(live_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not started & set(live_processes()), "stub processes outlived the server"
    assert not [region for region in shm if region.exists()], "shared memory outlived the server"


def test_a_killed_fleet_serve_leaves_no_server_behind() -> None:
    """kill -9 of fleet serve (no cleanup of its own): its tritonserver is told to stop (PDEATHSIG)."""
    ports = [str(free_port()) for _ in range(3)]
    args = ["--models", "image_classifier", "--http-port", ports[0], "--grpc-port", ports[1]]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tritonfleet.cli",
            "serve",
            *args,
            "--metrics-port",
            ports[2],
            "--openai-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ctrl-C" in line:
            break
    internal = int(internal_url(f"localhost:{ports[0]}").rsplit(":", 1)[1])
    server = next(
        pid for pid, p in live_processes().items() if p.comm == "tritonserver" and _serves(pid, internal)
    )
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 90
    while server in live_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server not in live_processes(), "tritonserver outlived a killed fleet serve"


def _serves(pid: int, http_port: int) -> bool:
    try:
        return f"--http-port={http_port}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_stop_removes_the_shared_memory_a_killed_server_leaves(tmp_path: Path) -> None:
    """A server that dies without unloading (or past its exit timeout) leaves its stubs' /dev/shm regions,
    16 MB each, until reboot; stop() removes them."""
    server = TritonServer.on_free_ports(REPOSITORY, models=["image_preprocess"], log=tmp_path / "server.log")
    server.start()
    regions = server.shm_regions()
    assert regions and all(r.exists() for r in regions)
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGKILL)  # a crash: no unload, nothing cleaned up
    server.process.wait()
    assert all(r.exists() for r in regions)  # left behind
    server.stop()
    assert not any(r.exists() for r in regions)


def test_serve_refuses_missing_artifacts_with_the_build_command(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    copy_repository(repo)
    missing = missing_artifacts(repo, ["efficientnet_lite0", "image_classifier"], "cpu")
    assert missing == ["efficientnet_lite0/1/model.onnx (run `fleet build image_classifier`)"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonfleet.cli",
            "--repository",
            str(repo),
            "serve",
            "--models",
            "image_classifier",
            "--http-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 1
    assert "fleet build image_classifier" in out.stdout
