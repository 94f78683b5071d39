"""``fleet plan --gpus SPEC [--name NAME] [--tp MODEL=N] [--rps MODEL=N] [--output DIR] [--dry-run]``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rich.console import Console

from tritonfleet.plan import memory, pack, render, report, spec
from tritonfleet.plan.gpus import GIB
from tritonfleet.repository import Repository
from tritonfleet.spec.tuning import TuningError

RESERVED_NAMES = ("cpu", "gpu", "config")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpus", required=True, help="inventory: 1xL4, 2xA100-40GB, 1xL4,1xA100-40GB, 2x24GiB")
    p.add_argument(
        "--name", help="config name (configs/NAME.pbtxt, --model-config-name); default from --gpus"
    )
    p.add_argument("--tp", action="append", default=[], metavar="MODEL=N", help="tensor parallel size")
    p.add_argument(
        "--rps", action="append", default=[], metavar="MODEL=N",
        help="target inferences/s: instances from the recorded throughput (fleet tune)",
    )  # fmt: skip
    p.add_argument("--output", type=Path, default=Path("reports/plan"), help="folder for the report")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")


def _pairs(items: list[str], kind: type) -> dict:
    out = {}
    for item in items:
        model, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r}: expected MODEL=N")
        out[model.strip()] = kind(value)
    return out


def run(args: argparse.Namespace, console: Console) -> int:
    try:
        gpus = spec.parse(args.gpus)
        name = args.name or spec.default_name(gpus)
        if not _NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise ValueError(f"--name {name!r}: lower-case letters, digits, - and _, not {RESERVED_NAMES}")
        repository = Repository(args.repository)
        demands = memory.fleet(repository, _pairs(args.tp, int))
        plan = pack.pack(demands, gpus, name, _pairs(args.rps, float))
    except pack.DoesNotFit as exc:
        console.print(f"[red]✗[/] {exc}")
        return 1
    except (ValueError, TuningError) as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    for g in plan.gpus:
        models = ", ".join(f"{s.model} x{s.instances}" for s in g.slots) or "nothing"
        console.print(
            f"GPU {g.index} {g.gpu.name}: {g.used / GIB:.2f} of {g.gpu.usable_bytes / GIB:.2f} GiB usable: "
            f"{models}"
        )
    for lp in plan.llm:
        console.print(
            f"{lp.model}: KV cache {lp.kv_tokens} tokens ({lp.kv_bytes / GIB:.2f} GiB), "
            f"kv_cache_free_gpu_mem_fraction {lp.fraction}, loads first"
        )
    if args.dry_run:
        return 0
    written = render.write_configs(repository, plan)
    reports = report.write(plan, args.output)
    configs = sum(p.suffix == ".pbtxt" for p in written)
    yamls = len(written) - configs
    console.print(
        f"[green]✓[/] {configs} configs/{name}.pbtxt"
        + (f" and {yamls} LLM-API configs/{name}{render.LLMAPI_SUFFIX}" if yamls else "")
        + f" in {args.repository}; report {reports[1]}"
    )
    console.print(f"  serve with: tritonserver {' '.join(plan.server_args)}")
    return 0
