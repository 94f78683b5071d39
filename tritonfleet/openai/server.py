"""Run the ``/v1`` app with uvicorn on a thread of its own: ``fleet serve`` starts it next to tritonserver,
tests and benchmarks beside their own servers. ``python -m tritonfleet.openai`` runs it on its own."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from tritonfleet import defaults
from tritonfleet.openai.app import create_app


class OpenAIServer:
    """uvicorn serving :func:`~tritonfleet.openai.create_app` on ``host:port``; ``app_options`` go to it."""

    def __init__(
        self,
        grpc_url: str,
        repository: Path,
        *,
        host: str = "127.0.0.1",
        port: int = defaults.OPENAI_PORT,
        **app_options: Any,
    ) -> None:
        self.host, self.port = host, port
        app = create_app(grpc_url, repository, **app_options)
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients take: ``OpenAI(base_url=server.url)``."""
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self, timeout: float = 30) -> OpenAIServer:
        """Serve from a thread; returns once the port accepts connections."""
        self._thread = threading.Thread(target=self.server.run, name="openai-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the OpenAI API did not start on {self.host}:{self.port} (port in use?)")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 15) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
