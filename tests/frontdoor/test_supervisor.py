"""Self-healing, on a fleet of its own: kill -9 of a model's stub (image_preprocess; tensorrt_llm, whose
reload brings ensemble and tensorrt_llm_bls back) and of tritonserver itself. Clients never hang meanwhile
(each request has a timeout and gets an answer: the right one, or 503 with Retry-After), the pipelines
answer right again, and no shared-memory region of a dead process is left in /dev/shm."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import CAT_CLASSES, running_fleet
from tritonfleet.clients import FleetClient
from tritonfleet.fleet import Fleet

pytestmark = pytest.mark.server

RECOVERY_WAIT_S = 240  # generous: the bench reports the times (targets 30 s for a stub, 90 s for the server)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    home = tmp_path_factory.mktemp("supervised")

    def say(line: str) -> None:
        with (home / "supervisor.log").open("a") as log:
            print(line, file=log)

    with running_fleet(home, models=["image_classifier", "llm"], say=say, openai_port=None) as f:
        f.log_dir = home  # type: ignore[attr-defined]
        yield f


def stub_of(fleet: Fleet, model: str) -> tuple[int, Path | None]:
    return next((pid, region) for pid, (m, region) in fleet.server.stub_models().items() if m == model)


def until_right(fleet: Fleet, attempt: Callable[[], object], check: Callable[[object], bool]) -> list[str]:
    """Call ``attempt`` until ``check`` passes; every call answers within its timeout. Returns what the
    failed calls answered (each must be a 503 the front door gave while the model came back)."""
    failures = []
    deadline = time.monotonic() + RECOVERY_WAIT_S
    while time.monotonic() < deadline:
        try:
            if check(attempt()):
                return failures
            failures.append("wrong answer")
        except Exception as exc:  # the answer is what the test looks at
            failures.append(str(exc)[:200])
        time.sleep(0.5)
    import sys
    import threading
    import traceback

    log = (fleet.log_dir / "supervisor.log").read_text()[-3000:]  # type: ignore[attr-defined]
    for t in threading.enumerate():
        if t.name == "supervisor" and t.ident in sys._current_frames():
            log += "".join(traceback.format_stack(sys._current_frames()[t.ident]))
    raise AssertionError(f"no right answer within {RECOVERY_WAIT_S}s: {failures[-3:]}\nsupervisor:\n{log}")


def assert_no_dead_regions(regions: list[Path]) -> None:
    left = [r for r in regions if r is not None and r.exists()]
    assert not left, f"shared memory of dead processes left behind: {left}"


def test_killed_image_preprocess_stub_heals(fleet: Fleet, cat_jpeg: bytes) -> None:
    pid, region = stub_of(fleet, "image_preprocess")
    instances = count_stubs(fleet, "image_preprocess")
    os.kill(pid, signal.SIGKILL)
    with FleetClient(fleet.http_url, api_key="", network_timeout=60.0) as client:
        failures = until_right(
            fleet,
            lambda: client.classify_image(cat_jpeg, top_k=1),
            lambda top: top[0].index in CAT_CLASSES,  # type: ignore[index]
        )
        assert all("503" in f or "restarting" in f for f in failures), failures
        # image_preprocess runs two instances: the live one may answer before the dead one is reloaded
        assert until_recovered(fleet, "model_reload", "image_preprocess")
        assert until_ready(fleet)
        # the reload's unload ends the live instance's old stub in the background: then as many as before
        assert until(lambda: count_stubs(fleet, "image_preprocess") == instances), fleet.server.stub_models()
        assert pid not in fleet.server.stub_models()
        # both instances answer again: every one of a run of requests is right
        answers = [client.classify_image(cat_jpeg, top_k=1)[0].index for _ in range(8)]
        assert all(a in CAT_CLASSES for a in answers), answers
    assert_no_dead_regions([region])


def until(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + RECOVERY_WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def until_recovered(fleet: Fleet, kind: str, model: str) -> bool:
    return until(lambda: any(r.kind == kind and r.model == model for r in fleet.supervisor.recoveries))


def count_stubs(fleet: Fleet, model: str) -> int:
    return sum(m == model for m, _ in fleet.server.stub_models().values())


def until_ready(fleet: Fleet) -> bool:
    deadline = time.monotonic() + RECOVERY_WAIT_S
    while time.monotonic() < deadline:
        if requests.get(f"http://{fleet.http_url}/v2/health/ready", timeout=10).status_code == 200:
            return True
        time.sleep(0.5)
    return False


def test_killed_tensorrt_llm_stub_brings_ensemble_and_bls_back(fleet: Fleet) -> None:
    pid, region = stub_of(fleet, "tensorrt_llm")
    before = {m: count_stubs(fleet, m) for m in ("tensorrt_llm", "tensorrt_llm_bls")}
    os.kill(pid, signal.SIGKILL)
    with FleetClient(fleet.grpc_url, protocol="grpc", api_key="") as client:
        until_right(
            fleet,
            lambda: client.generate("Name three primary colors.", max_tokens=16),
            lambda text: "red" in str(text).lower(),
        )
        until_right(
            fleet,
            lambda: "".join(client.stream("Name three primary colors.", max_tokens=16, timeout=60)),
            lambda text: "red" in str(text).lower(),
        )
    assert until_recovered(fleet, "model_reload", "tensorrt_llm")
    assert until_ready(fleet)
    assert until(lambda: {m: count_stubs(fleet, m) for m in before} == before), fleet.server.stub_models()
    assert_no_dead_regions([region])


def test_killed_tritonserver_restarts(fleet: Fleet, cat_jpeg: bytes) -> None:
    regions = sorted(fleet.server.shm_regions())
    assert regions
    fleet.server.process.send_signal(signal.SIGKILL)
    seen = []
    with FleetClient(fleet.http_url, api_key="", network_timeout=60.0) as client:
        failures = until_right(
            fleet,
            lambda: client.classify_image(cat_jpeg, top_k=1),
            lambda top: top[0].index in CAT_CLASSES,  # type: ignore[index]
        )
        seen += failures
    assert all("503" in f or "not available" in f for f in seen), seen
    assert until_ready(fleet)
    assert any(r.kind == "server_restart" for r in fleet.supervisor.recoveries)
    assert_no_dead_regions(regions)
    with FleetClient(fleet.grpc_url, protocol="grpc", api_key="") as client:
        assert "red" in client.generate("Name three primary colors.", max_tokens=16).lower()
    metrics = requests.get(fleet.metrics_url, timeout=30).text
    # The counter starts at 0 (so Prometheus sees the first restart as an increase): it is 1 or more now.
    series = 'tritonfleet_frontdoor_recoveries_total{kind="server_restart",model="tritonserver"}'
    restarts = re.search(rf"^{re.escape(series)} (\S+)$", metrics, re.M)
    assert restarts and float(restarts.group(1)) >= 1, metrics
