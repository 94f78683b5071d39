"""What keeps ``fleet serve``'s topology (:class:`tritonfleet.fleet.Fleet`) alive: the :class:`Supervisor`.

- tritonserver exits (a crash, the OOM killer): the front door answers 503 with ``Retry-After`` while the
  supervisor removes what the dead server left in /dev/shm and starts it again (backoff 1, 2, 4 ... 30 s).
- a model's Python stub dies while Triton still calls the model READY (python_backend 24.10 does not
  restart it): the supervisor sees the stub's PID gone (or the front door sees "Stub process ... is not
  healthy"), unloads and loads the model (explicit model control) and the public models that depend on it,
  and removes the dead stub's shared-memory region.
- readiness (``/v2/health/ready`` on the front door) is true only while Triton is up and every public
  pipeline's probe (one real request, answer checked) passed since the last recovery; probes rerun every
  ``probe_interval`` seconds.

Each recovery is logged and counted (``tritonfleet_frontdoor_recoveries``).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tritonfleet import defaults, pipelines
from tritonfleet.clients import FleetClient
from tritonfleet.frontdoor.access import AccessControl, ServerState
from tritonfleet.repository import Repository
from tritonfleet.server import ServerError, TritonServer

MAX_BACKOFF_S = 30.0
PROBE_TIMEOUT_S = 60.0
UNLOAD_WAIT_S = 5.0  # a normal unload ends its stubs in 1-3 s here; a stuck one never does


@dataclass
class Recovery:
    kind: str  # "server_restart" or "model_reload"
    model: str
    seconds: float
    at: float = field(default_factory=time.time)


class Supervisor:
    """Watches ``server`` and heals it (see the module docstring); runs on a thread of its own."""

    def __init__(
        self,
        server: TritonServer,
        access: AccessControl,
        public: list[str],
        *,
        log: Callable[[str], None] = print,
        probe_interval: float = defaults.PROBE_INTERVAL_S,
        poll_s: float = 0.5,
    ) -> None:
        self.server = server
        self.access = access
        self.state: ServerState = access.state
        self.public = public
        self.log = log
        self.probe_interval = probe_interval
        self.poll_s = poll_s
        self.pipelines = [
            p for p in pipelines.registry().values() if set(p.public) <= set(public) and p.probe
        ]
        self.recoveries: list[Recovery] = []
        self._stubs: dict[int, tuple[str, Path | None]] = {}
        self._faults: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_probe = 0.0
        self._failures = 0
        self._probe_thread: threading.Thread | None = None
        self._probe_client: Any = None
        self._probe_started = 0.0
        self._generation = 0
        access.on_dead_stub.append(self._faults.put)

    # --- lifecycle ---

    def start(self) -> None:
        self.access.metrics.expect(self.server.models)
        self._snapshot()
        self.state.up = True
        self.state.reason = "probing"
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self, join: bool = True) -> None:
        """Stop watching (nothing is restarted after this); ``join``: wait for the watch thread."""
        self._stop.set()
        if join and self._thread is not None:
            self._thread.join(timeout=30)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state.ready:
                return True
            time.sleep(0.1)
        return False

    # --- the watch ---

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # the supervisor must outlive anything it watches
                self.log(f"supervisor: {traceback.format_exc()}")
            self._stop.wait(self.poll_s)

    def _tick(self) -> None:
        process = self.server.process
        if process is None or process.poll() is not None:
            self._restart_server(None if process is None else process.returncode)
            return
        reported = False
        while not self._faults.empty():  # the front door saw "Stub process ... is not healthy"
            self._faults.get_nowait()
            reported = True
        dead = self._dead_stub_models()
        if not dead and reported:  # a stub started since the last snapshot: look at all of them
            self._snapshot_missing()
            dead = self._dead_stub_models()
        for model in sorted(dead):
            self._reload(model)
        if reported and not dead:
            self._next_probe = 0.0  # probe now (unless a round is running): is every pipeline answering?
        if time.monotonic() >= self._next_probe or self._probe_overdue():
            self._probe()

    def _probe_overdue(self) -> bool:
        alive = self._probe_thread is not None and self._probe_thread.is_alive()
        return alive and time.monotonic() - self._probe_started >= PROBE_TIMEOUT_S

    def _snapshot(self, fresh: bool = False, reloaded: tuple[str, ...] = ()) -> None:
        """Record the live stubs. A stub that died since the last look stays recorded (as dead) until its
        model is reloaded, so a death during another recovery is still seen; ``fresh`` (a new server)
        forgets every old one."""
        current = self.server.stub_models()
        kept = {} if fresh else {
            pid: entry
            for pid, entry in self._stubs.items()
            if pid not in current and entry[0] not in reloaded and not _alive(pid)
        }  # fmt: skip
        self._stubs = {**kept, **current}
        self.server.remember()

    def _dead_stub_models(self) -> set[str]:
        """Models whose recorded stub is gone (or a zombie): reads one /proc entry per stub, not all of
        /proc, since this runs every ``poll_s`` on the front door's process."""
        return {model for pid, (model, _) in self._stubs.items() if not _alive(pid)}

    def _snapshot_missing(self) -> None:
        for pid, entry in self.server.stub_models().items():
            self._stubs.setdefault(pid, entry)

    def _probe(self, fresh: bool = False) -> None:
        """Start a round of every pipeline's probe against the internal port, on a thread of its own (a
        request to a model whose step died can hang: the watch goes on meanwhile). A round still running
        after ``PROBE_TIMEOUT_S``, or when ``fresh`` (after a recovery), is abandoned: its client is
        closed, which ends its call. The round's result sets readiness."""
        running = self._probe_thread is not None and self._probe_thread.is_alive()
        if running and not fresh and time.monotonic() - self._probe_started < PROBE_TIMEOUT_S:
            return
        if running:
            self._abandon_probe("a probe got no answer in time" if not fresh else None)
        self._generation += 1
        generation = self._generation
        client = FleetClient(f"127.0.0.1:{self.server.grpc_port}", protocol="grpc", api_key="")
        self._probe_client = client
        self._probe_started = time.monotonic()
        self._next_probe = self._probe_started + self.probe_interval

        def probe_all() -> None:
            failed = []
            for pipeline in self.pipelines:
                try:
                    assert pipeline.probe is not None
                    pipeline.probe(client)
                except Exception as exc:
                    failed.append(f"{pipeline.name}: {str(exc)[:200]}")
            with contextlib.suppress(Exception):
                client.close()
            if generation == self._generation:
                self._set_ready(failed)

        self._probe_thread = threading.Thread(target=probe_all, name="supervisor-probe", daemon=True)
        self._probe_thread.start()

    def _abandon_probe(self, failure: str | None) -> None:
        self._generation += 1
        with contextlib.suppress(Exception):
            if self._probe_client is not None:
                self._probe_client.close()
        if failure:
            self._set_ready([failure])

    def _set_ready(self, failed: list[str]) -> None:
        process = self.server.process
        with self.state.lock:
            was = self.state.ready
            self.state.ready = not failed and process is not None and process.poll() is None
            self.state.reason = "; ".join(failed) if failed else "ready"
        self.access.metrics.ready.set(1 if self.state.ready else 0)
        if failed:
            self.log(f"supervisor: not ready: {self.state.reason}")
            self._next_probe = min(self._next_probe, time.monotonic() + 5.0)
        elif not was:
            self.log("supervisor: ready (every pipeline answered its probe)")

    # --- recoveries ---

    def _restart_server(self, code: int | None) -> None:
        if self._stop.is_set():  # the fleet is stopping: the server exits because it was told to
            return
        started = time.monotonic()
        with self.state.lock:
            self.state.up = self.state.ready = False
            self.state.reason = f"tritonserver exited ({code}); restarting"
        self._abandon_probe(None)
        self.access.metrics.ready.set(0)
        self.log(f"supervisor: tritonserver exited with {code}: restarting")
        self.server.stop()  # kills what is left of its process group, removes its shared memory
        while not self._stop.is_set():
            delay = min(MAX_BACKOFF_S, 2.0**self._failures) if self._failures else 0.0
            if self._stop.wait(delay):
                return
            try:
                self.server.start()
                break
            except ServerError as exc:
                self._failures += 1
                wait = min(MAX_BACKOFF_S, 2.0**self._failures)
                self.log(f"supervisor: restart failed ({exc}); next try in {wait:.0f}s")
        else:
            return
        self._failures = 0
        self._snapshot(fresh=True)
        with self.state.lock:
            self.state.up = True
            self.state.reason = "probing after restart"
        self._probe(fresh=True)
        self._record("server_restart", "tritonserver", started)

    def _reload(self, model: str) -> None:
        started = time.monotonic()
        with self.state.lock:
            self.state.ready = False
            self.state.reason = f"reloading {model}"
        self.access.metrics.ready.set(0)
        dependents = self._dependents(model)
        self.log(f"supervisor: {model}'s model process died: reloading it and {dependents or 'nothing else'}")
        self._control(model, "unload")
        self._wait_unloaded(model)
        for name in [model, *dependents]:
            self._control(name, "load")
        # Python backend 24.10 leaves a dead stub's region in /dev/shm: remove every region the model's
        # recorded stubs (dead or ended by the unload) had; the new stubs have their own.
        old = {region for m, region in self._stubs.values() if m == model and region is not None}
        live = {region for m, region in self.server.stub_models().values() if m == model}
        for region in old - live:
            with contextlib.suppress(OSError):
                region.unlink(missing_ok=True)
        self._snapshot(reloaded=(model, *dependents))
        self._probe(fresh=True)
        self._record("model_reload", model, started)

    def _wait_unloaded(self, model: str) -> None:
        """Wait until the unload has ended ``model``'s live stubs: Triton answers an unload at once and
        ends the instances in the background, and a load sent meanwhile leaves the old stubs running. An
        unload never ends when a request reached the dead stub (python_backend 24.10 keeps that request's
        response, and the model stays UNLOADING): after ``UNLOAD_WAIT_S`` the old stubs are killed, so the
        reload leaves no process of the old instances behind."""
        deadline = time.monotonic() + UNLOAD_WAIT_S
        while True:
            old = [pid for pid, (m, _) in self.server.stub_models().items() if m == model]
            if not old or self._stop.is_set():
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        for pid in old:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.log(f"supervisor: {model}'s unload left its old stubs {old} running: killed them")

    def _dependents(self, model: str) -> list[str]:
        """The loaded public models that call ``model`` (directly or through their steps)."""
        repo = Repository(self.server.repository)
        return [m for m in self.public if m != model and model in repo.closure([m], self.server.target)]

    def _control(self, model: str, action: str) -> None:
        url = f"http://127.0.0.1:{self.server.http_port}/v2/repository/models/{model}/{action}"
        request = urllib.request.Request(url, data=b"{}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            self.log(f"supervisor: {action} {model} failed: {exc}")

    def _record(self, kind: str, model: str, started: float) -> None:
        seconds = time.monotonic() - started
        self.recoveries.append(Recovery(kind, model, seconds))
        self.access.metrics.recoveries.labels(kind, model).inc()
        self.log(f"supervisor: {kind} {model} done in {seconds:.1f}s; probing the pipelines")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
