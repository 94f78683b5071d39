"""``python -m tritonfleet.openai --grpc-url localhost:8001 --port 9000``: the ``/v1`` API over a running
Triton server (``fleet serve`` starts it by itself)."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from tritonfleet import artifacts, defaults
from tritonfleet.openai.app import create_app


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tritonfleet.openai", description=__doc__.split("\n")[0])
    p.add_argument("--grpc-url", default=defaults.GRPC_URL, help="the Triton server's gRPC address")
    p.add_argument("--repository", type=Path, default=artifacts.REPOSITORY)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=defaults.OPENAI_PORT)
    p.add_argument("--default-max-tokens", type=int, help="budget of a request that gives none")
    args = p.parse_args()
    app = create_app(args.grpc_url, args.repository, default_max_tokens=args.default_max_tokens)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
