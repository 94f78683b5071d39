"""Run the real ``tritonserver`` bundled in the ``nvidia-pytriton`` wheel on a model repository.

The wheel ships tritonserver 2.51.0 (Triton 24.10) with the Python backend. This module lays out the
backends folder Triton expects, sets the environment the Python backend stub needs, starts the server in
its own process group (so stopping it also stops every stub it started) and waits until it is ready.
See docs in README ("How the CPU target runs").
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tritonfleet import defaults
from tritonfleet.repository import Repository

BACKENDS_SOURCE = Path(__file__).parent / "backends"
STUB_NAME = "triton_python_backend_stub"
EXIT_TIMEOUT_S = 60
SHM_PREFIX = "/dev/shm/triton_"  # the Python backend's shared memory regions, one per stub
# Stopping a server that lost a stub (see TritonServer.stop): it is killed once no stub has exited for
# STALL_S, or none is left for DRAINED_S. A stub stops in ~1 s when its model unloads.
STALL_S = 10
DRAINED_S = 2


class ServerError(RuntimeError):
    """The server failed to start or to become ready."""


def pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("nvidia-pytriton is not installed: run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def tritonserver_binary() -> Path:
    return pytriton_dir() / "tritonserver" / "bin" / "tritonserver"


def library_dir() -> Path:
    """Shared libraries the bundled server and stubs link against."""
    return pytriton_dir().parent / "nvidia_pytriton.libs"


def make_backends_dir(dest: Path) -> Path:
    """Lay out ``dest`` as a Triton backends folder: the Python backend plus our Python-based backends.

    ``python/`` holds ``libtriton_python.so``, its utils module and the stub built for the running Python.
    Every other folder (``onnxruntime/model.py``) is a Python-based backend: Triton falls back to its
    ``model.py`` when ``libtriton_<name>.so`` is absent, so configs written for the native backend load.
    """
    bundled = pytriton_dir() / "tritonserver"
    python = dest / "python"
    python.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(bundled / "backends" / "python" / name, python / name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy2(bundled / "python_backend_stubs" / version / STUB_NAME, python / STUB_NAME)
    for backend in BACKENDS_SOURCE.iterdir():
        if (backend / "model.py").is_file():
            (dest / backend.name).mkdir(exist_ok=True)
            shutil.copy2(backend / "model.py", dest / backend.name / "model.py")
    return dest


@dataclass(frozen=True)
class ProcessInfo:
    comm: str  # the kernel truncates it to 15 characters
    session: int


def live_processes() -> dict[int, ProcessInfo]:
    """Every process on this machine that is not a zombie, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text.split("(", 1)[1].rsplit(")", 1)
        state, _, _, session = rest.split()[:4]
        if state != "Z":
            found[int(stat.parent.name)] = ProcessInfo(comm, int(session))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TritonServer:
    """A tritonserver process serving ``repository`` on the CPU (or with GPU configs, ``target="gpu"``).

    Use as a context manager, or call :meth:`start` and :meth:`stop`. It loads ``models`` (model names: see
    :func:`tritonfleet.pipelines.loading.models_to_load` for a pipeline's) and every model they depend on in
    the repository's configs for ``target``. Model control is always explicit, so that a model can be
    reloaded.
    """

    def __init__(
        self,
        repository: Path,
        *,
        models: list[str],
        target: str = "cpu",
        http_port: int = defaults.HTTP_PORT,
        grpc_port: int = defaults.GRPC_PORT,
        metrics_port: int = defaults.METRICS_PORT,
        log: IO[bytes] | Path | None = None,
        shm_byte_size: int = 16 * 1024 * 1024,
        extra_args: list[str] | None = None,
        address: str | None = None,
        memory_limit: int | None = None,
        binary: Path | None = None,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.models = Repository(self.repository).closure(models, target)
        self.target = target
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.log = log
        self.shm_byte_size = shm_byte_size
        self.extra_args = extra_args or []
        self.address = address  # listen on this address only (127.0.0.1 behind the front door)
        # RLIMIT_DATA of the server and its stubs: a runaway allocation fails in tritonserver (which then
        # aborts) instead of waking the kernel's OOM killer, which could pick another process (tests).
        self.memory_limit = memory_limit
        # Another tritonserver (the GPU image's, with its own backends) instead of the PyPI-bundled one.
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_file: IO[bytes] | None = None
        self._shm: set[Path] = set()  # shared memory regions seen mapped by the server's processes
        self._stubs: set[int] = set()  # stub PIDs seen: one gone before stop() is a stub lost

    @classmethod
    def on_free_ports(cls, repository: Path, **kwargs: Any) -> TritonServer:
        """A server on ports nobody uses (tests, benchmarks): beside a running ``fleet serve``."""
        ports = {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}
        return cls(repository, **ports, **kwargs)

    @property
    def http_url(self) -> str:
        return f"localhost:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://localhost:{self.metrics_port}/metrics"

    def command(self, backends: Path | None) -> list[str]:
        """The tritonserver command line."""
        cmd = [
            str(self.binary or tritonserver_binary()),
            f"--model-repository={self.repository}",
            *([f"--backend-directory={backends}"] if backends else []),
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--pinned-memory-pool-byte-size=0",
            # Configs are complete: skipping auto-complete halves start-up (no extra stub per model).
            "--disable-auto-complete-config",
            f"--backend-config=python,shm-default-byte-size={self.shm_byte_size}",
            "--log-info=true",
            # Unloading takes a while: a model's Python stubs stop one by one, ~1 s each (tensorrt_llm_bls has
            # 8). Past the timeout tritonserver exits at once and the stubs' shared memory stays in /dev/shm.
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
        ]
        if self.address:
            cmd += [f"--{api}-address={self.address}" for api in ("http", "grpc", "metrics")]
        if self.target == "cpu":  # on the GPU target Triton's nv_gpu_* metrics stay on (the dashboard's)
            cmd += ["--model-config-name=cpu", "--allow-gpu-metrics=false"]
        cmd.append("--model-control-mode=explicit")
        cmd += [f"--load-model={name}" for name in self.models]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        """The stub embeds libpython and finds its environment through the first ``python3`` on PATH."""
        env = dict(os.environ)
        if self.binary:
            return env
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(library_dir()), env.get("LD_LIBRARY_PATH", "")) if p
        )
        return env

    def start(self, timeout: float = 240.0) -> TritonServer:
        self._workdir = Path(tempfile.mkdtemp(prefix="tritonfleet-"))
        backends = None if self.binary else make_backends_dir(self._workdir / "backends")
        if isinstance(self.log, Path):
            self._log_file = self.log.open("wb")
            out: IO[bytes] | None = self._log_file
        else:
            out = self.log
        self.process = subprocess.Popen(
            self.command(backends),
            env=self.environment(),
            stdout=out,
            stderr=subprocess.STDOUT if out is not None else None,
            start_new_session=True,  # its own process group: stopping it reaches every stub
            preexec_fn=self._in_child,
        )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self._shm, self._stubs = set(), set()  # a restarted server: the old one's are gone
        self.remember()  # models load at start: stop() removes what survives the server
        return self

    def _in_child(self) -> None:
        """In the forked child before exec: SIGTERM when the thread that started it ends (``fleet serve``
        killed: no orphaned server), and the memory limit."""
        import ctypes
        import resource

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if self.memory_limit:
            resource.setrlimit(resource.RLIMIT_DATA, (self.memory_limit, self.memory_limit))

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ServerError(f"tritonserver exited ({code}) before it was ready{self._log_hint()}")
            if self.is_ready():
                return
            time.sleep(0.25)
        raise ServerError(f"tritonserver not ready after {timeout:.0f}s{self._log_hint()}")

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def session_processes(self) -> dict[int, str]:
        """Live processes (pid -> command name) in the server's session: the server and its stubs."""
        if self.process is None:
            return {}
        return {pid: p.comm for pid, p in live_processes().items() if p.session == self.process.pid}

    def stub_pids(self) -> set[int]:
        """PIDs of the Python backend stubs this server started (the kernel truncates their name)."""
        return {pid for pid, comm in self.session_processes().items() if STUB_NAME.startswith(comm)}

    def shm_regions(self) -> set[Path]:
        """The shared memory regions (/dev/shm) that the server and its stubs have mapped."""
        regions = set()
        for pid in self.session_processes():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                    path = line.split(maxsplit=5)[-1]
                    if path.startswith(SHM_PREFIX):
                        regions.add(Path(path))
        return regions

    def remember(self) -> None:
        """Note the regions mapped and the stubs running now (after a model reload), so that :meth:`stop`
        removes those regions too and knows when one of those stubs is gone."""
        self._shm |= self.shm_regions()
        self._stubs |= self.stub_pids()

    def stub_models(self) -> dict[int, tuple[str, Path | None]]:
        """Each stub's PID -> (the model it serves, its shared memory region), from its command line:
        ``stub <repository>/<model>/<version>/<file> <region> ...``."""
        found = {}
        for pid in self.stub_pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                model = Path(argv[1].decode()).relative_to(self.repository).parts[0]
                region = Path("/dev/shm") / argv[2].decode() if len(argv) > 2 else None
                found[pid] = (model, region)
        return found

    def stop(self, timeout: float = EXIT_TIMEOUT_S + 15) -> int | None:
        """SIGTERM the server (it unloads models and stops stubs), then kill whatever is left of its group,
        and remove the shared memory it leaves behind (a server killed or past its exit timeout does).

        A server that lost a stub (killed, or its model unloaded) is killed as soon as its stubs stop
        exiting: Triton 24.10 cannot unload a model whose dead stub was sent a request (the Python backend
        never frees that request's response factory), nor finish an ensemble request whose step failed
        while another step still streamed (ensemble scheduler, fixed in Triton core PR #466), so it would
        wait out its exit timeout for them. The exit code is then -SIGKILL."""
        code = None
        if self.process is not None:
            regions = self._shm | self.shm_regions()
            if self.process.poll() is None:
                lost = bool(self._stubs - self.stub_pids())
                self.process.send_signal(signal.SIGTERM)
                self._wait_exit(timeout, lost)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
            deadline = time.monotonic() + 5
            while self.session_processes() and time.monotonic() < deadline:
                time.sleep(0.05)
            for region in regions:  # the processes that mapped them are gone: nobody else knows these names
                region.unlink(missing_ok=True)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def _wait_exit(self, timeout: float, lost: bool) -> None:
        """Wait up to ``timeout`` for the server to exit; with a stub ``lost``, only while its stubs still
        exit (see :meth:`stop`)."""
        assert self.process is not None
        if not lost:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        stubs, changed = self.stub_pids(), time.monotonic()
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.2)
                return
            live = self.stub_pids()
            if live != stubs:
                stubs, changed = live, time.monotonic()
            if time.monotonic() - changed >= (STALL_S if stubs else DRAINED_S):
                return

    def _log_hint(self) -> str:
        return f"; see {self.log}" if isinstance(self.log, Path) else ""

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
