"""``fleet bench fleet``: the whole fleet's time to ready and memory, over several fresh starts.

Each start is a new tritonserver serving every pipeline (what ``fleet serve`` runs). Time to ready is from
the process start to ``/v2/health/ready``; memory is the PSS of the server and every Python stub once ready,
and again after one request to each pipeline's probe (the first request loads lazily built state).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tritonfleet import pipelines, status
from tritonfleet.clients import FleetClient
from tritonfleet.pipelines.loading import models_to_load
from tritonfleet.server import TritonServer
from tritonfleet.tools.bench import report

TARGETS = {"ready_s": 60.0, "memory_gb": 4.0}


def measure(repository: Path, output: Path) -> dict[str, Any]:
    """One fresh start: seconds to ready, models and stubs loaded, PSS after start and after the probes."""

    models = models_to_load(repository)
    server = TritonServer.on_free_ports(repository, models=models, log=output / "tritonserver-fleet.log")
    start = time.monotonic()
    server.start()
    try:
        ready_s = time.monotonic() - start
        idle = status.collect(server.http_url)
        stubs = len(status.stubs_of(idle.server_pid)) if idle.server_pid else 0
        with FleetClient(server.grpc_url, protocol="grpc") as fleet:
            for pipeline in pipelines.registry().values():
                if pipeline.probe is not None:
                    pipeline.probe(fleet)
        served = status.collect(server.http_url)
    finally:
        server.stop()
    return {
        "ready_s": ready_s,
        "models": sum(m.state == "READY" for m in idle.models),
        "stubs": stubs,
        "pss_gb_ready": (idle.total_pss_mb or 0) / 1024,
        "pss_gb_after_probes": (served.total_pss_mb or 0) / 1024,
        "pss_mb_by_model": {m.name: round(m.pss_mb or 0, 1) for m in served.models if m.instances},
    }


def run(args: argparse.Namespace, console: Console) -> int:
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(args.starts):
        with console.status(f"start {i + 1}/{args.starts}: the whole fleet"):
            runs.append(measure(args.repository, output))
        r = runs[-1]
        console.print(
            f"  start {i + 1}: ready in {r['ready_s']:.1f} s, {r['models']} models, {r['stubs']} stubs, "
            f"{r['pss_gb_ready']:.2f} GB ready, {r['pss_gb_after_probes']:.2f} GB after one request each"
        )
    summary = {
        "ready_s_median": statistics.median(r["ready_s"] for r in runs),
        "ready_s_max": max(r["ready_s"] for r in runs),
        "pss_gb_max": max(r["pss_gb_after_probes"] for r in runs),
    }
    data = {"machine": report.machine(), "targets": TARGETS, "summary": summary, "runs": runs}
    m = data["machine"]
    last = runs[-1]["pss_mb_by_model"]
    md = (
        f"# The whole fleet: time to ready and memory\n\n{m['date']} on {m['cpu']} ({m['cores']} cores), "
        f"{len(runs)} fresh starts of every pipeline ({runs[-1]['models']} models, {runs[-1]['stubs']} "
        "Python stubs).\n\n"
        + report.markdown_table(
            ["start", "ready s", "models", "stubs", "PSS GB ready", "PSS GB after one request each"],
            [
                [i + 1, r["ready_s"], r["models"], r["stubs"], r["pss_gb_ready"], r["pss_gb_after_probes"]]
                for i, r in enumerate(runs)
            ],
        )
        + f"\n\nTargets: ready ≤ {TARGETS['ready_s']:.0f} s (median {summary['ready_s_median']:.1f} s, "
        f"max {summary['ready_s_max']:.1f} s), memory ≤ {TARGETS['memory_gb']:.0f} GB "
        f"(max {summary['pss_gb_max']:.2f} GB).\n\nPSS by model (last start, after the probes):\n\n"
        + report.markdown_table(["model", "PSS MB"], [[k, v] for k, v in sorted(last.items())])
    )
    path = report.write(output, "fleet", data, md)
    console.print(f"[green]✓[/] report: {path}")
    return 0
