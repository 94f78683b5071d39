"""Default ports and limits of the fleet, written once: the CLI, the server launcher, the front door, the
clients and the OpenAI app take them from here. Version pins live in pyproject.toml (one place each); the
pipelines name the distributions they need and take the versions from there
(:func:`tritonfleet.pipelines.requirements`).
"""

from __future__ import annotations

import os
from pathlib import Path

HTTP_PORT = 8000  # KServe v2 over HTTP (the front door's public port; tritonserver's own when run alone)
GRPC_PORT = 8001  # KServe v2 over gRPC
METRICS_PORT = 8002  # Prometheus metrics
OPENAI_PORT = 9000  # the OpenAI-compatible API (/v1)

HTTP_URL = f"localhost:{HTTP_PORT}"
GRPC_URL = f"localhost:{GRPC_PORT}"

MAX_BODY_MB = 64  # the largest request body (and all of one request's tensors) the front door accepts
PROBE_INTERVAL_S = 30.0  # seconds between the supervisor's rounds of pipeline probes


def cache_root() -> Path:
    """The build cache (content-hashed artifacts, engines, compiled models, peers): ``$TRITONFLEET_CACHE``
    or ``~/.cache/tritonfleet``."""
    return Path(os.environ.get("TRITONFLEET_CACHE", Path.home() / ".cache" / "tritonfleet"))
