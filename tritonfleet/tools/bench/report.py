"""Write a benchmark report as JSON + Markdown + a PNG plot."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    import os

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def write(output: Path, name: str, data: dict[str, Any], markdown: str, plot: Any | None = None) -> Path:
    """Write ``<name>.json``, ``<name>.md`` and (if given a matplotlib figure) ``<name>.png``."""
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    if plot is not None:
        plot.savefig(output / f"{name}.png", dpi=120, bbox_inches="tight")
        markdown += f"\n\n![{name}]({name}.png)\n"
    (output / f"{name}.md").write_text(markdown)
    return output / f"{name}.md"
