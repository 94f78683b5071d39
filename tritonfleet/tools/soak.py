"""``fleet soak``: mixed traffic over every pipeline through the front door, for minutes.

``concurrency`` workers each loop over the pipelines' probes (real requests whose answers are checked) and
the other ``traffic`` they declare (the LLM's stream), through the front door (HTTP and gRPC in turn).
Counted: requests, errors (any exception, a wrong answer included). Memory: the PSS of tritonserver and
every stub (``tritonfleet.status``) at the end of the warm-up (a fifth of the run, at least 30 s or the
whole of a short run) and at the end.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tritonfleet import pipelines, status
from tritonfleet.clients import FleetClient

TARGET_GROWTH = 0.05


def run(fleet: Any, *, minutes: float, concurrency: int = 16, say: Any = None) -> dict[str, Any]:
    """Soak a started :class:`~tritonfleet.fleet.Fleet`; the numbers as a dict."""

    served = [p for p in pipelines.registry().values() if set(p.public) <= set(fleet.public)]
    work: list[tuple[str, Any]] = [(p.name, p.probe) for p in served if p.probe]
    work += [(f"{p.name}_{call.__name__}", call) for p in served for call in p.traffic]
    seconds = minutes * 60
    warmup = min(max(seconds / 5, 30.0), seconds)
    start = time.monotonic()
    counts: dict[str, int] = {name: 0 for name, _ in work}
    errors: list[str] = []
    error_count = [0]
    lock = threading.Lock()
    memory: dict[str, float | None] = {"warm": None, "end": None}

    def pss() -> tuple[float | None, dict[str, float]]:
        """Total PSS, and each process's: tritonserver and the stubs of each model."""
        now = status.collect(f"127.0.0.1:{fleet.server.http_port}")
        parts = {m.name: m.pss_mb for m in now.models if m.pss_mb}
        if now.server_pss_mb is not None:
            parts["tritonserver"] = now.server_pss_mb
        return now.total_pss_mb, parts

    def worker(index: int) -> None:
        protocol = "grpc" if index % 2 else "http"
        url = fleet.grpc_url if protocol == "grpc" else fleet.http_url
        with FleetClient(url, protocol=protocol) as client:
            i = index
            while time.monotonic() - start < seconds:
                name, call = work[i % len(work)]
                i += 1
                try:
                    call(client)
                    with lock:
                        counts[name] += 1
                except Exception as exc:
                    with lock:
                        error_count[0] += 1
                        if len(errors) < 20:
                            errors.append(f"{name} ({protocol}): {str(exc)[:200]}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    time.sleep(warmup)
    memory["warm"], warm_parts = pss()
    samples = [(round(time.monotonic() - start), memory["warm"])]
    every = max((seconds - warmup) / 10, 10.0)  # about ten samples after the warm-up: does it level off?
    next_sample = warmup + every
    while any(t.is_alive() for t in threads):
        time.sleep(1.0)
        if time.monotonic() - start >= next_sample and time.monotonic() - start < seconds:
            samples.append((round(time.monotonic() - start), pss()[0]))
            next_sample += every
    for t in threads:
        t.join()
    memory["end"], end_parts = pss()
    samples.append((round(time.monotonic() - start), memory["end"]))
    wall = time.monotonic() - start
    growth = None
    if memory["warm"] and memory["end"]:
        growth = memory["end"] / memory["warm"] - 1
    by_process = {
        name: {"warm": warm_parts.get(name), "end": mb, "growth_mb": mb - warm_parts.get(name, 0.0)}
        for name, mb in end_parts.items()
    }
    result = {
        "minutes": minutes,
        "concurrency": concurrency,
        "seconds": wall,
        "requests": sum(counts.values()),
        "by_pipeline": counts,
        "errors": error_count[0],
        "error_samples": errors,
        "pss_mb_after_warmup": memory["warm"],
        "pss_mb_end": memory["end"],
        "memory_growth": growth,
        "pss_mb_samples": samples,
        "pss_mb_by_process": by_process,
        "recoveries": [r.__dict__ for r in fleet.supervisor.recoveries] if fleet.supervisor else [],
    }
    if say:
        say(result)
    return result
