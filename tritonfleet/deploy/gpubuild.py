"""What ``fleet build --target gpu`` runs: a TensorRT plan per model the rule gives TensorRT (the pipelines'
``build/tensorrt_plan.py`` recipes) and the TensorRT-LLM engine of each ``tensorrtllm`` config; where the
tools are missing it prints each command exactly, with the TensorRT / TensorRT-LLM command it stands for.
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tritonfleet import pipelines
from tritonfleet.artifacts import PROJECT_ROOT
from tritonfleet.repository import Repository

PLAN_SCRIPT = "build/tensorrt_plan.py"
ENGINE_SCRIPT = PROJECT_ROOT / "build" / "llm" / "trtllm_engine.py"


@dataclass(frozen=True)
class Step:
    model: str
    command: list[str]  # what fleet build runs
    tool_commands: list[str]  # the TensorRT / TensorRT-LLM commands it amounts to (printed by the script)
    needs: tuple[str, ...]  # what this machine lacks to run it; empty: it can run here


def missing_tensorrt() -> tuple[str, ...]:
    found = importlib.util.find_spec("tensorrt") is not None
    return () if found else ("the tensorrt Python package (or trtexec for the printed command)",)


def missing_trtllm() -> tuple[str, ...]:
    missing = [] if importlib.util.find_spec("tensorrt_llm") else ["the tensorrt_llm Python package"]
    if shutil.which("trtllm-build") is None:
        missing.append("trtllm-build on PATH")
    return tuple(missing)


def _printed(command: list[str], flag: str) -> list[str]:
    """The tool commands a build script prints with ``flag`` (it prints them without running anything)."""
    result = subprocess.run([*command, flag], capture_output=True, text=True, cwd=PROJECT_ROOT, check=False)
    if result.returncode != 0:
        return [f"(the script refused: {result.stderr.strip().splitlines()[-1] if result.stderr else '?'})"]
    return [line for line in result.stdout.splitlines() if line.strip()]


def steps(repository: Path, names: list[str] | None = None) -> list[Step]:
    out = []
    for recipe in pipelines.recipes("gpu", names):
        if recipe.script != PLAN_SCRIPT:
            continue
        command = recipe.command(repository, repository)
        out.append(Step(recipe.models[0], command, _printed(command, "--print-command"), missing_tensorrt()))
    registry = pipelines.registry()
    owned = {m for n in names or registry for r in registry[n].recipes for m in r.models} if names else None
    for name, config in Repository(repository).configs("gpu"):
        if config.backend != "tensorrtllm" or (owned is not None and name not in owned):
            continue
        target = config.parameters["gpt_model_path"].string_value
        checkpoint = sorted((PROJECT_ROOT / "checkpoints").glob("*/config.json"))
        ckpt = str(checkpoint[0].parent) if checkpoint else str(PROJECT_ROOT / "checkpoints" / "<model>")
        command = [sys.executable, str(ENGINE_SCRIPT), "--checkpoint", ckpt, "--output", target]
        out.append(Step(name, command, _printed(command, "--print-commands"), missing_trtllm()))
    return out


def report(plan: list[Step]) -> str:
    lines = []
    for step in plan:
        lines.append(f"{step.model}: {shlex.join(step.command)}")
        lines += [f"    {c}" for c in step.tool_commands]
        if step.needs:
            lines.append(f"    (not here: {'; '.join(step.needs)})")
    return "\n".join(lines)


def gate(repository: Path, names: list[str] | None, say: Callable[[str], None]) -> int | None:
    """Before ``fleet build --target gpu`` runs anything: where a tool is missing, say every command exactly
    and return 3; None when everything can run here."""
    plan = steps(repository, names)
    if not any(step.needs for step in plan):
        return None
    say("The GPU build needs tools this machine lacks. It would run (inside the image, docker/Dockerfile):")
    say(report(plan))
    return 3


def build_engines(repository: Path, names: list[str] | None, say: Callable[[str], None]) -> int:
    """Run the TensorRT-LLM engine steps (the plans are the pipelines' recipes); the first failure's code."""
    for step in steps(repository, names):
        if step.command[1] != str(ENGINE_SCRIPT):
            continue
        say(f"{step.model}: {shlex.join(step.command)}")
        if code := subprocess.run(step.command, cwd=PROJECT_ROOT, check=False).returncode:
            return code
    return 0
