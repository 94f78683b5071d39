"""`fleet status` against the session's server: counts move with traffic, stubs' memory is found."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import CAT_CLASSES
from tritonfleet import status
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.clients import FleetClient
from tritonfleet.repository import Repository
from tritonfleet.server import TritonServer


def test_status_counts_requests_and_finds_every_stub(server: TritonServer, cat_jpeg: bytes) -> None:
    before = {m.name: m for m in status.collect(server.http_url).models}
    with FleetClient(server.http_url) as fleet:
        top = fleet.classify_images([cat_jpeg] * 3, top_k=1)  # one request, a batch of three
    assert all(t[0].index in CAT_CLASSES for t in top)
    fleet_status = status.collect(server.http_url)
    after = {m.name: m for m in fleet_status.models}
    assert after["image_classifier"].inferences - before["image_classifier"].inferences == 3
    assert after["efficientnet_lite0"].executions > before["efficientnet_lite0"].executions
    # Instances and stubs: each instance of a Python-backed model is one stub process of this server.
    assert fleet_status.server_pid == server.process.pid  # type: ignore[union-attr]
    stubs = status.stubs_of(fleet_status.server_pid)
    assert set(stubs) == server.stub_pids()
    repo = Repository(REPOSITORY)
    for model in set(stubs.values()):
        groups = repo.config(model).instance_group
        assert (
            after[model].instances == sum(g.count or 1 for g in groups) == list(stubs.values()).count(model)
        )
        assert after[model].pss_mb > 5, model  # a Python interpreter with numpy at least
    assert after["image_classifier"].instances is None  # an ensemble runs no process of its own
    assert fleet_status.total_pss_mb > sum(m.pss_mb or 0 for m in fleet_status.models)


def test_fleet_status_prints_a_row_per_model(server: TritonServer) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tritonfleet.cli", "status", "--url", server.http_url],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.strip()}
    assert rows["image_classifier"][1:3] == ["READY", "ensemble"]
    assert rows["tensorrt_llm_bls"][1] == "READY" and rows["tensorrt_llm_bls"][-1] == "MB"
    assert "in all (PSS)" in out.stdout


def test_status_of_no_server_is_a_clear_error() -> None:
    from tritonfleet.server import free_port

    out = subprocess.run(
        [sys.executable, "-m", "tritonfleet.cli", "status", "--url", f"localhost:{free_port()}"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "no status from localhost:" in out.stdout
    assert "Traceback" not in out.stderr
