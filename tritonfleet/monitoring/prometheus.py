"""Debian's real ``prometheus`` on a generated config: scrapes the fleet's metrics port (Triton's metrics and
the front door's, served together), evaluates the fleet's rules, listens on 127.0.0.1 only.

``fleet serve --prometheus`` runs one beside the fleet and stops it with the fleet; ``fleet monitor`` runs one
against a running fleet. Its data lives in ``$TRITONFLEET_HOME/prometheus/`` unless told otherwise (tests:
a temporary folder). :func:`query` reads its HTTP API.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tritonfleet.monitoring import rules

BINARY = "prometheus"
JOB = "tritonfleet"


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, or refused a query."""


def dump(document: dict[str, Any]) -> str:
    """YAML as committed: keys in order, one line per expression."""
    return yaml.safe_dump(document, sort_keys=False, width=1 << 16, allow_unicode=True)


def config(targets: list[str], rules_file: str, interval: str = "15s") -> dict[str, Any]:
    """A Prometheus config scraping the fleet's metrics ports (``host:port``) as job ``tritonfleet``."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [rules_file],
        "scrape_configs": [
            {"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": list(targets)}]}
        ],
    }


def binary() -> str:
    found = shutil.which(BINARY)
    if found is None:
        raise PrometheusError("prometheus is not installed (scripts/setup.sh installs Debian's package)")
    return found


class Prometheus:
    """One Prometheus process; ``start`` returns once it answers ``/-/ready``."""

    def __init__(
        self,
        targets: list[str],
        repository: Path,
        *,
        port: int = 9090,
        storage: Path | None = None,
        interval: str = "15s",
        retention: str = "15d",
        log: Path | None = None,
    ) -> None:
        self.targets = targets
        self.repository = repository
        self.port = port
        self.storage = storage
        self.interval = interval
        self.retention = retention
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._work: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self, folder: Path) -> Path:
        """The config and the rules it reads, into ``folder``; the config's path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rules.yml").write_text(dump(rules.document(self.repository)))
        path = folder / "prometheus.yml"
        path.write_text(dump(config(self.targets, "rules.yml", self.interval)))
        return path

    def start(self, timeout: float = 60.0) -> Prometheus:
        exe = binary()
        self._work = Path(tempfile.mkdtemp(prefix="tritonfleet-prometheus-"))
        storage = self.storage or self._work / "data"
        storage.mkdir(parents=True, exist_ok=True)
        cfg = self.write_config(self._work)
        command = [
            exe,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={storage}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 (the process keeps it)
        self.process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=self._work
        )
        if self.log:
            out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise PrometheusError(f"prometheus exited with {self.process.returncode} ({self._where()})")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response,
            ):
                if response.status == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus was not ready in {timeout:.0f}s ({self._where()})")

    def _where(self) -> str:
        return f"log {self.log}" if self.log else "run it with a log to see why"

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def query(self, expr: str) -> list[dict[str, Any]]:
        return query(self.url, expr)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def api(url: str, path: str, params: dict[str, str] | None = None) -> Any:
    """``data`` of a Prometheus HTTP API answer; :class:`PrometheusError` with its error otherwise."""
    full = f"{url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(full, timeout=30) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # a bad query is a 400 with the error in the body
        body = json.loads(exc.read() or b"{}")
    if body.get("status") != "success":
        raise PrometheusError(f"{path} {params or ''}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's series (``[{"metric": {...}, "value": [t, "v"]}, ...]``)."""
    data = api(url, "/api/v1/query", {"query": expr})
    if data["resultType"] != "vector":
        raise PrometheusError(f"{expr}: a {data['resultType']}, not an instant vector")
    return data["result"]
