"""Shared fixtures: one real tritonserver for the whole session, real photos."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tritonfleet.artifacts import PROJECT_ROOT, REPOSITORY
from tritonfleet.batch.config import BatchConfig
from tritonfleet.fleet import Fleet
from tritonfleet.pipelines.loading import missing_artifacts, models_to_load
from tritonfleet.server import TritonServer, free_port

# ImageNet-1k indices of the domestic cat classes: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_CLASSES = {281, 282, 283, 284, 285}
# espresso, cup, coffee mug
COFFEE_CLASSES = {967, 968, 504}


def copy_repository(dest: Path) -> Path:
    """The repository's committed files (configs, model.py, labels) without built artifacts (everything in a
    version folder but model.py, and fleet plan's configs, as .gitignore says), which are hundreds of MB (the
    LLM engine) and would fill the disk when tests copy the repository many times."""

    def built(folder: str, names: list[str]) -> list[str]:
        in_version = Path(folder).parent.parent == REPOSITORY and Path(folder).name.isdigit()
        planned = Path(folder).name == "configs"  # fleet plan's configs/NAME.pbtxt (not committed)
        return [
            n
            for n in names
            if n == "__pycache__"
            or (in_version and n not in ("model.py", ".gitkeep"))
            or (planned and n != "cpu.pbtxt")
        ]

    shutil.copytree(REPOSITORY, dest, ignore=built)
    return dest


def copy_sources(dest: Path) -> Path:
    """The project's files as a clean clone has them (tracked, and new ones git does not ignore), but the
    model repository: callers copy it (:func:`copy_repository`) or link the built one."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in files:
        if (PROJECT_ROOT / name).is_file() and not name.startswith("model_repository/"):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / name, dest / name)
    return dest


@contextlib.contextmanager
def running_fleet(home: Path, **options: Any) -> Iterator[Fleet]:
    """``fleet serve``'s Fleet of the built repository on free ports (front door, /v1 app, console), started,
    with its keys file, batch store and server log in ``home`` and no probes (their tokens would count in the
    tests' generation checks); ``options`` go to :class:`Fleet` (``openai_port=None``: no /v1 app). Stopped on
    exit. Each fleet has a store of its own: fleets that share one (the default, $TRITONFLEET_HOME's) share
    their batch lines, and another fleet's worker would answer them."""
    fleet = Fleet.on_free_ports(
        REPOSITORY,
        keys_path=home / "keys.json",
        log=home / "tritonserver.log",
        **{
            "probe_interval": 3600,
            "openai_port": free_port(),
            "batch": BatchConfig(store=f"sqlite:///{home / 'batch.db'}"),
            **options,
        },
    )
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


def wait_for(check: Callable[[], Any], timeout: float, what: str = "", every: float = 0.2) -> Any:
    """``check()``'s first true value, or an AssertionError naming ``what`` (else the check) after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {what or getattr(check, '__name__', check)}")
        time.sleep(every)


def infer_concurrently(
    url: str, model: str, requests: list[list[Any]], outputs: list[Any] | None = None
) -> list[Any]:
    """Send every request (its ``InferInput`` list) at once over one asyncio gRPC client: each one's result
    or exception, in order."""
    import tritonclient.grpc.aio as grpcaio

    async def send_all() -> list[Any]:
        client = grpcaio.InferenceServerClient(url)
        try:
            return await asyncio.gather(
                *(client.infer(model, inputs, outputs=outputs) for inputs in requests), return_exceptions=True
            )
        finally:
            await client.close()

    return asyncio.run(send_all())


SERVER_FIXTURES = {"server", "llm_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the session's tritonserver carry the ``server`` marker (``pytest -m "not server"`` runs the
    rest in seconds); tests that start servers of their own mark themselves."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def rag_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built repository but for the retriever, indexed from the RAG tests' frozen corpus
    (tests/rag/frozen.py): what the tests assert about retrieval does not depend on README and docs/."""
    from tests.rag.frozen import build_repository

    return build_repository(tmp_path_factory.mktemp("rag") / "repository")


@pytest.fixture(scope="session")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """tritonserver 2.51.0 serving the whole repository with its CPU configs (the retriever's index from the
    frozen corpus: :func:`rag_repository`).

    ``FLEET_TEST_MODELS=a,b`` loads only those pipelines or models (and their steps), for a quick local run.
    """
    only = [n for n in os.environ.get("FLEET_TEST_MODELS", "").split(",") if n]
    models = models_to_load(REPOSITORY, only or None)
    missing = missing_artifacts(REPOSITORY, models, "cpu")
    if missing:
        pytest.fail("artifacts not built (make test builds them): " + ", ".join(missing))
    log = tmp_path_factory.mktemp("server") / "tritonserver.log"
    repository = request.getfixturevalue("rag_repository") if "retriever" in models else REPOSITORY
    srv = TritonServer.on_free_ports(repository, models=models, log=log)
    try:
        srv.start()
    except Exception:
        print(log.read_text()[-5000:] if log.exists() else "no log")
        raise
    yield srv
    srv.stop()


def _jpeg(array: object, fmt: str = "JPEG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    import skimage.data

    return _jpeg(skimage.data.chelsea())


@pytest.fixture(scope="session")
def coffee_png() -> bytes:
    import skimage.data

    return _jpeg(skimage.data.coffee(), "PNG")


@pytest.fixture(scope="session")
def cat_file(tmp_path_factory: pytest.TempPathFactory, cat_jpeg: bytes) -> Path:
    path = tmp_path_factory.mktemp("images") / "chelsea.jpg"
    path.write_bytes(cat_jpeg)
    return path
