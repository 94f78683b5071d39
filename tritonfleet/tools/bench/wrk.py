"""Debian's ``wrk``, the HTTP load generator of the benchmarks, installed with apt-get on first use (the
benchmarks only: the set-up and CI do not need it)."""

from __future__ import annotations

import os
import shutil
import subprocess

from rich.console import Console


def binary(console: Console) -> str:
    """The path of ``wrk``, installed first where it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    with console.status("apt-get install wrk (the HTTP load generator)"):
        for cmd in ([*sudo, "apt-get", "update", "-qq"], [*sudo, "apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(
                cmd, check=True, capture_output=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            )
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found
