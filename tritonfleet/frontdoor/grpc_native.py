"""The front door's gRPC transport in C++: calls taken and forwarded as bytes by gRPC's C++ callback API
(Debian's libgrpc++), every decision made by :class:`~tritonfleet.frontdoor.grpc_calls.GrpcCalls` in this
process (the same rules, keys, limits and metrics as the HTTP door and the grpc.aio transport).

Python's grpc.aio costs about five times the checks per call (docs/frontdoor/design.md); with the C++
transport the checks are all that Python does per call. The extension (``grpc_native.cpp``) is built
at set-up (:func:`build`, ``python -m tritonfleet.frontdoor.grpc_native``) into the build cache, keyed by
its source, the libgrpc++ version and the Python version; :func:`load` finds it, and without it the front
door falls back to grpc.aio (:mod:`~tritonfleet.frontdoor.grpc_proxy`).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType

import grpc

from tritonfleet.artifacts import cache_root
from tritonfleet.frontdoor.access import AccessControl
from tritonfleet.frontdoor.grpc_calls import SERVICE, STREAM, GrpcCalls, Pending, Refusal

SOURCE = Path(__file__).with_suffix(".cpp")
MODULE = "_grpc_native"
FLAGS = ["-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden"]
THREADS = 2  # threads taking and forwarding calls (each with a completion queue and an upstream connection)
CODES = {c.name: c.value[0] for c in grpc.StatusCode}
NAMES = {number: name for name, number in CODES.items()}


class NativeUnavailable(RuntimeError):
    """The C++ transport cannot be built or loaded here (the reason says why)."""


def _pkg_config(*args: str) -> list[str]:
    if shutil.which("pkg-config") is None:
        raise NativeUnavailable("pkg-config not found (apt-get install pkg-config)")
    out = subprocess.run(["pkg-config", *args, "grpc++"], capture_output=True, text=True)
    if out.returncode != 0:
        raise NativeUnavailable("libgrpc++ not found (apt-get install libgrpc++-dev pybind11-dev)")
    return out.stdout.split()


def target() -> Path:
    """Where the extension for this source, libgrpc++ and Python lives in the build cache."""
    key = hashlib.sha256(SOURCE.read_bytes())
    for part in (*_pkg_config("--modversion"), sys.version, *FLAGS):
        key.update(part.encode())
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return cache_root() / "native" / f"grpc_native-{key.hexdigest()[:20]}" / f"{MODULE}{suffix}"


def build() -> Path:
    """Compile the extension into the build cache (once per key); its path."""
    path = target()
    if path.is_file():
        return path
    if shutil.which("g++") is None:
        raise NativeUnavailable("g++ not found (apt-get install g++)")
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").is_file():
        raise NativeUnavailable(f"Python.h not found in {include} (apt-get install python3.11-dev)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        built = Path(tmp) / path.name
        cmd = ["g++", *FLAGS, f"-I{include}", *_pkg_config("--cflags"), str(SOURCE), "-o", str(built)]
        out = subprocess.run([*cmd, *_pkg_config("--libs")], capture_output=True, text=True)
        if out.returncode != 0:
            raise NativeUnavailable(f"g++ failed:\n{out.stderr[-3000:]}")
        built.replace(path)
    return path


@cache
def load() -> ModuleType:
    """The built extension (:class:`NativeUnavailable` when it is not built or does not load)."""
    try:
        path = target()
    except FileNotFoundError as exc:  # no source: an installed package without it
        raise NativeUnavailable(str(exc)) from None
    if not path.is_file():
        raise NativeUnavailable(f"not built ({path}): python -m tritonfleet.frontdoor.grpc_native")
    spec = importlib.util.spec_from_file_location(MODULE, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise NativeUnavailable(f"{path} does not load: {exc}") from None
    return module


def available() -> str | None:
    """None when the C++ transport can serve here, else why not."""
    try:
        load()
    except NativeUnavailable as exc:
        return str(exc)
    return None


def _refuse(refusal: Refusal) -> tuple[int, int, str, str]:
    return (REFUSE, CODES[refusal.code], refusal.message, refusal.retry_after)


ANSWER, REFUSE, FORWARD, PASS = 0, 1, 2, 3  # the extension's kinds of decision (grpc_native.cpp)
PASS_ON = (PASS,)


class _Decisions:
    """The handler the extension calls (with the GIL held): GrpcCalls' answers as its tuples."""

    def __init__(self, calls: GrpcCalls) -> None:
        self.calls = calls

    def unary(self, path: str, raw: bytes, authorization: str | None) -> tuple:
        step = self.calls.unary(path, raw, authorization)
        if type(step) is Pending:
            return (FORWARD, step, step.cut_stats)
        if type(step) is bytes:
            return (ANSWER, step)
        return _refuse(step)  # type: ignore[arg-type]

    def unary_done(self, call: Pending, code: int, details: str, answer: bytes | None) -> tuple:
        step = self.calls.answered(call, NAMES.get(code, "UNKNOWN"), details, answer)
        if step is None:
            return PASS_ON
        if type(step) is bytes:
            return (ANSWER, step)
        return _refuse(step)  # type: ignore[arg-type]

    def stream_open(self, path: str, metadata: list[tuple[str, str | bytes]]) -> tuple:
        authorization = None
        for name, value in metadata:
            if name == "authorization":
                authorization = value
        step = self.calls.stream_open(authorization)  # type: ignore[arg-type]
        if isinstance(step, Refusal):
            return _refuse(step)
        return (FORWARD, step, [(n, v) for n, v in metadata if n != "authorization"])

    def stream_message(self, stream: object, raw: bytes) -> bytes | None:
        return self.calls.stream_message(stream, raw)  # type: ignore[arg-type]

    def stream_answer(self, stream: object, raw: bytes) -> bytes:
        return self.calls.stream_answer(raw)

    def finished(self, calls: list[tuple[Pending, float]]) -> None:
        self.calls.finished(calls)

    def stream_close(self, stream: object, code: int, details: str) -> tuple:
        step = self.calls.stream_closed(stream, NAMES.get(code, "UNKNOWN"), details)  # type: ignore[arg-type]
        return PASS_ON if step is None else _refuse(step)


class NativeGrpcFrontDoor:
    """The gRPC front door on the C++ transport: ``start`` binds (0: it could not) and returns at once."""

    def __init__(
        self,
        access: AccessControl,
        upstream: str,
        internal: tuple[str, ...] = (),
        max_message: int = 0,
        threads: int = THREADS,
    ) -> None:
        self.access = access
        self.calls = GrpcCalls(access, internal)
        self.max_message = max_message or access.public.limits.max_body_bytes + (1 << 20)
        self._server = load().Server(
            _Decisions(self.calls), upstream, self.max_message, [f"/{SERVICE}/{STREAM}"], threads
        )
        self._report = self._server.report
        access.metrics.before_scrape.append(self._report)

    def start(self, address: str) -> int:
        return int(self._server.start(address))

    def stop(self, grace_s: float = 1.0) -> None:
        self._server.stop(grace_s)
        if self._report in self.access.metrics.before_scrape:
            self.access.metrics.before_scrape.remove(self._report)


def main() -> int:
    """Build the extension (``python -m tritonfleet.frontdoor.grpc_native``); say where it is or why not."""
    try:
        path = build()
        load()
    except NativeUnavailable as exc:
        print(f"grpc_native: not built: {exc}", file=sys.stderr)
        return 1
    print(f"grpc_native: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
