"""``fleet serve``'s whole topology: tritonserver on internal ports of 127.0.0.1, the front door
(:mod:`tritonfleet.frontdoor`) on the public ones, the ``/v1`` app with the batch service
(:mod:`tritonfleet.batch`) and the web console (:mod:`tritonfleet.console`) in it, and the
:class:`~tritonfleet.supervisor.Supervisor` that keeps them alive."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tritonfleet import defaults, pipelines
from tritonfleet.batch.config import BatchConfig
from tritonfleet.batch.service import BatchService
from tritonfleet.console.api import Console
from tritonfleet.frontdoor.access import AccessControl
from tritonfleet.frontdoor.keys import KeyStore, home
from tritonfleet.frontdoor.policy import PublicModels
from tritonfleet.frontdoor.service import FrontDoor, Ports, is_local
from tritonfleet.frontdoor.validation import Limits
from tritonfleet.openai import OpenAIServer
from tritonfleet.pipelines.loading import models_to_load
from tritonfleet.server import TritonServer, free_port
from tritonfleet.supervisor import Supervisor


def runtime_file(public_http_port: int) -> Path:
    """Where a running fleet says which internal ports its tritonserver has (``fleet status`` reads it)."""
    return home() / "run" / f"fleet-{public_http_port}.json"


def internal_url(url: str) -> str:
    """``url`` (HTTP ``host:port``) of a local ``fleet serve``: its tritonserver's internal address, which
    needs no key; any other ``url`` unchanged."""
    host, _, port = url.rpartition(":")
    if host not in ("localhost", "127.0.0.1", "::1") or not port.isdigit():
        return url
    try:
        info = json.loads(runtime_file(int(port)).read_text())
        os.kill(info["pid"], 0)
    except (OSError, ValueError, KeyError):
        return url
    return f"127.0.0.1:{info['internal']['http']}"


class FleetError(RuntimeError):
    """The fleet cannot start as asked (an insecure address, a server that never got ready)."""


class Fleet:
    """tritonserver on 127.0.0.1's internal ports, the front door on the public ones, and the supervisor.

    ``models``: the pipelines or models to load (default: every pipeline), with what they call. ``host``: the
    address the front door listens on. Without any API key only a loopback address is allowed, unless
    ``insecure``. Ports 0 pick free ones (tests); the bound ones are in :attr:`ports`.
    """

    def __init__(
        self,
        repository: Path,
        *,
        models: list[str] | None = None,
        target: str = "cpu",
        host: str = "127.0.0.1",
        http_port: int = defaults.HTTP_PORT,
        grpc_port: int = defaults.GRPC_PORT,
        metrics_port: int = defaults.METRICS_PORT,
        openai_port: int | None = None,
        keys_path: Path | None = None,
        insecure: bool = False,
        limits: Limits | None = None,
        log: Path | None = None,
        memory_limit: int | None = None,
        probe_interval: float = defaults.PROBE_INTERVAL_S,
        say: Callable[[str], None] = print,
        server_args: dict[str, Any] | None = None,
        public: list[str] | None = None,
        openai_max_tokens: int | None = None,
        grpc_transport: str = "auto",
        batch: BatchConfig | None = None,
    ) -> None:
        self.repository = Path(repository).resolve()
        self.openai_max_tokens = openai_max_tokens
        self.grpc_transport = grpc_transport  # the front door's (frontdoor.service.grpc_transport)
        self.openai: Any = None  # the /v1 app (tritonfleet.openai.OpenAIServer) on an internal port
        self.batch_config = batch  # None: from the environment (BatchConfig.from_env)
        self.batch: Any = None  # the batch service (tritonfleet.batch.service.BatchService), with /v1
        self.console: Console | None = None  # the web console's server side, in the /v1 app
        self._public = public  # default: what the pipeline declarations call public
        self.host = host
        self.requested = Ports(http_port, grpc_port, metrics_port, openai_port)
        self.keys = KeyStore(keys_path)
        self.insecure = insecure
        self.limits = limits or Limits()
        self.probe_interval = probe_interval
        self.say = say
        self.server = TritonServer(
            self.repository,
            models=models_to_load(self.repository, models, target),
            target=target,
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port(),
            address="127.0.0.1",
            log=log,
            memory_limit=memory_limit,
            **(server_args or {}),
        )
        self.access: AccessControl | None = None
        self.door: FrontDoor | None = None
        self.supervisor: Supervisor | None = None
        self.ports: Ports | None = None

    @classmethod
    def on_free_ports(cls, repository: Path, **kwargs: Any) -> Fleet:
        return cls(repository, http_port=0, grpc_port=0, metrics_port=0, **kwargs)

    @property
    def models(self) -> list[str]:
        return self.server.models

    @property
    def public(self) -> list[str]:
        return [m for m in (self._public or list(pipelines.public_models())) if m in self.server.models]

    def check_secure(self) -> None:
        if not is_local(self.host) and not self.insecure and not self.keys.enabled:
            raise FleetError(
                f"listening on {self.host} needs API keys: add one with `fleet keys add NAME` "
                f"(keys file {self.keys.file.path}), or pass --insecure"
            )

    def start(self, timeout: float = 300.0) -> Fleet:
        self.check_secure()
        self.server.start(timeout)
        try:
            public = PublicModels.from_repository(
                self.repository, self.server.models, self.server.target, self.limits, self.public
            )
            self.access = AccessControl(
                public, self.keys, require_keys=not is_local(self.host) and not self.insecure
            )
            openai_port = self._start_openai() if self.requested.openai else None
            self.door = FrontDoor(
                self.access,
                self.host,
                self.requested,
                Ports(self.server.http_port, self.server.grpc_port, self.server.metrics_port, openai_port),
                internal=(str(self.repository), str(self.server.repository)),
                transport=self.grpc_transport,
            )
            self.ports = self.door.start()
            self.supervisor = Supervisor(
                self.server, self.access, self.public, log=self.say, probe_interval=self.probe_interval
            )
            self.supervisor.start()
            if self.console is not None:
                self.console.start()
            if not self.supervisor.wait_ready(timeout):
                raise FleetError(f"the fleet did not get ready: {self.access.state.reason}")
            self._write_runtime()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_openai(self) -> int:
        """The /v1 app on 127.0.0.1 behind the front door, with the batch API and its workers and the
        console's API; its usage hook charges the caller's key."""
        assert self.access is not None
        grpc = f"127.0.0.1:{self.server.grpc_port}"
        self.batch = BatchService(
            grpc, self.repository, self.access.public, keys=self.keys, config=self.batch_config,
            registry=self.access.metrics.registry,
        ).start()  # fmt: skip
        port = free_port()
        status_url = f"127.0.0.1:{self.server.http_port}"
        self.console = Console(self.repository, self.access.public, status_url, self._metrics_text)
        self.openai = OpenAIServer(
            grpc,
            self.repository,
            port=port,
            default_max_tokens=self.openai_max_tokens,
            on_usage=self._on_usage,
            routes=[*self.batch.routes, *self.console.routes()],
        ).start()
        return port

    def _metrics_text(self) -> str:
        """What the metrics port serves: Triton's metrics, then the front door's (the console's charts)."""
        assert self.access is not None
        url = f"http://127.0.0.1:{self.server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            triton = response.read().decode()
        return triton + self.access.metrics.text().decode()

    def _on_usage(self, request: Any, tokens: int) -> None:
        """The OpenAI app's hook, once per request (prompt + completion tokens): tokens per minute."""
        assert self.access is not None
        key = self.keys.by_name(request.headers.get("x-tritonfleet-key", ""))
        if key is not None:
            self.access.limiter.used_tokens(key, tokens)
        self.access.metrics.tokens.labels(key.name if key else "-").inc(tokens)

    @property
    def openai_url(self) -> str | None:
        """The base URL OpenAI clients take (``/v1`` on the front door's OpenAI port)."""
        if self.ports is None or self.ports.openai is None:
            return None
        return f"http://{self._url(self.ports.openai)}/v1"

    @property
    def console_url(self) -> str | None:
        """The web console's address (on the HTTP port, beside the /v1 app), or None."""
        if self.ports is None or self.console is None:
            return None
        return f"http://{self._url(self.ports.http)}/"

    def _write_runtime(self) -> None:
        assert self.ports is not None
        path = runtime_file(self.ports.http)
        path.parent.mkdir(parents=True, exist_ok=True)
        internal = {
            "http": self.server.http_port,
            "grpc": self.server.grpc_port,
            "metrics": self.server.metrics_port,
        }
        path.write_text(json.dumps({"pid": os.getpid(), "internal": internal}))

    def stop(self) -> None:
        if self.ports is not None:
            runtime_file(self.ports.http).unlink(missing_ok=True)
        if self.supervisor is not None:
            self.supervisor.stop(join=False)  # no restart from here on
        if self.door is not None:
            self.door.stop()
        if self.console is not None:
            self.console.stop()
        if self.openai is not None:
            self.openai.stop()
            self.openai = None
        if self.batch is not None:
            self.batch.stop()
            self.batch = None
        self.server.stop()  # before the watch thread ends: a server it restarted gets SIGTERM when it does
        if self.supervisor is not None:
            self.supervisor.stop()

    def _url(self, port: int | None) -> str:
        host = "localhost" if self.host in ("0.0.0.0", "::", "127.0.0.1") else self.host
        return f"{host}:{port}"

    @property
    def http_url(self) -> str:
        assert self.ports is not None
        return self._url(self.ports.http)

    @property
    def grpc_url(self) -> str:
        assert self.ports is not None
        return self._url(self.ports.grpc)

    @property
    def metrics_url(self) -> str:
        assert self.ports is not None
        return f"http://{self._url(self.ports.metrics)}/metrics"

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
