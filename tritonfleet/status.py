"""``fleet status``: what a running server serves, like ``ollama ps``.

Per model: its state (Triton's repository index), instances (its config), executions, inferences, the
average batch it ran, average queue and compute time (Triton's statistics), and, when the server runs on
this machine, the memory of its Python stubs from /proc. Memory is PSS (proportional set size): stubs share
their libraries, so RSS would count the same pages once per stub. Triton's metrics only have host-wide
memory, hence /proc.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class ModelStatus:
    name: str
    state: str
    instances: int | None  # None: an ensemble; 0: not loaded
    executions: int
    inferences: int
    queue_ms: float  # average per request
    compute_ms: float  # average per execution
    pss_mb: float | None  # its stubs, None when the server is not on this machine

    @property
    def avg_batch(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0


@dataclass(frozen=True)
class FleetStatus:
    models: list[ModelStatus]
    server_pss_mb: float | None  # tritonserver itself
    server_pid: int | None

    @property
    def total_pss_mb(self) -> float | None:
        if self.server_pss_mb is None:
            return None
        return self.server_pss_mb + sum(m.pss_mb or 0.0 for m in self.models)


def pss_mb(pid: int) -> float:
    """A process's proportional set size in MiB (0 if it is gone)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cmdline(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    return []


def find_server(http_port: int) -> int | None:
    """The pid of the tritonserver on this machine that serves HTTP on ``http_port``, if any."""
    for proc in Path("/proc").glob("[0-9]*"):
        args = _cmdline(int(proc.name))
        if args and Path(args[0]).name == "tritonserver" and f"--http-port={http_port}" in args:
            return int(proc.name)
    return None


def stubs_of(server_pid: int) -> dict[int, str]:
    """pid -> model name of the Python stubs a tritonserver started (their arguments name the instance:
    ``<model>_<group>_<index>``, and the parent's pid)."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        args = _cmdline(int(proc.name))
        if len(args) > 8 and Path(args[0]).name == STUB and args[5] == str(server_pid):
            found[int(proc.name)] = args[8].rsplit("_", 2)[0]
    return found


def collect(url: str, headers: dict[str, str] | None = None) -> FleetStatus:
    """The status of the server at ``url`` (HTTP ``host:port``)."""
    import tritonclient.http as httpclient

    with httpclient.InferenceServerClient(url) as client:
        index = client.get_model_repository_index(headers=headers)
        stats = {s["name"]: s for s in client.get_inference_statistics(headers=headers)["model_stats"]}
        configs = {
            m["name"]: client.get_model_config(m["name"], headers=headers)
            for m in index
            if m.get("state") == "READY"
        }
    port = int(url.rsplit(":", 1)[1])
    server = find_server(port) if url.split(":")[0] in ("localhost", "127.0.0.1") else None
    memory: dict[str, float] = {}
    if server is not None:
        for pid, model in stubs_of(server).items():
            memory[model] = memory.get(model, 0.0) + pss_mb(pid)
    models = []
    for entry in sorted(index, key=lambda m: m["name"]):
        name = entry["name"]
        s = stats.get(name, {})
        inference = s.get("inference_stats", {})
        models.append(
            ModelStatus(
                name=name,
                state=entry.get("state", "UNKNOWN"),
                instances=_instances(configs.get(name, {})),
                executions=int(s.get("execution_count", 0)),
                inferences=int(s.get("inference_count", 0)),
                queue_ms=_avg_ms(inference.get("queue", {})),
                compute_ms=_avg_ms(inference.get("compute_infer", {})),
                pss_mb=memory.get(name, 0.0) if server is not None else None,
            )
        )
    return FleetStatus(models, pss_mb(server) if server is not None else None, server)


def _instances(config: dict[str, Any]) -> int | None:
    """Model instances; None for an ensemble (it has none) and 0 for a model not loaded (no config)."""
    if not config:
        return 0
    if config.get("platform") == "ensemble":
        return None
    return sum(int(g.get("count", 1)) for g in config.get("instance_group", [])) or 1


def _avg_ms(stat: dict[str, Any]) -> float:
    count = int(stat.get("count", 0))
    return int(stat.get("ns", 0)) / count / 1e6 if count else 0.0
