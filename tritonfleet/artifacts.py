"""Build serving artifacts with the recipes in ``build/``, cached by content hash outside the clone.

A recipe is a standalone script (``python build/<pipeline>/<script>.py ...``) that writes its artifacts
into a folder laid out like the repository; pipelines declare their recipes (``tritonfleet.pipelines``).
Its cache key hashes the script, the project files it reads, the versions of the packages that shape its
output and the Python version, so a second build (or a second clone) reuses the result instead of
re-exporting. The cache lives in ``$TRITONFLEET_CACHE`` or ``~/.cache/tritonfleet``.
"""

from __future__ import annotations

import glob
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tritonfleet.defaults import cache_root

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = PROJECT_ROOT / "model_repository"


@dataclass(frozen=True)
class BuildOption:
    """A value a recipe takes from the command line: ``fleet build --<name> VALUE``, ``{name}`` in its args.

    With ``files``, the value is a comma-separated list of files, folders (their ``*.md`` and ``*.txt``
    files, recursively) or glob patterns (``**`` matches any depth of folders), relative to the project root
    unless absolute; what they hold is part of the cache key, so editing a file rebuilds."""

    name: str
    default: str
    help: str
    files: bool = False

    def absolute(self, value: str) -> str:
        """A ``files`` option's value with each part made absolute (against the project root)."""
        parts = (p.strip() for p in value.split(","))
        return ",".join(p if Path(p).is_absolute() else str(PROJECT_ROOT / p) for p in parts if p)

    def paths(self, value: str) -> list[Path]:
        """The files a ``files`` option's value names, sorted, without duplicates."""
        found: set[Path] = set()
        for part in self.absolute(value).split(","):
            path = Path(part)
            if not part:
                continue
            if path.is_dir():
                found |= {f for f in path.rglob("*") if f.suffix in (".md", ".txt") and f.is_file()}
            else:
                found |= {Path(f) for f in glob.glob(str(path), recursive=True) if Path(f).is_file()}
        return sorted(found)


@dataclass(frozen=True)
class Recipe:
    """One build step: ``script`` run with ``args`` writes ``outputs`` (paths relative to the repository).

    ``args`` may name ``{output}``, the folder laid out like the repository that the script writes into
    (a staging folder for cached recipes, the repository itself otherwise), ``{repository}``, and each of
    its ``options`` by name. The cache key hashes the arguments before substitution, so it does not depend
    on where the repository is, and the options' values (a ``files`` option's files by content).
    ``needs`` are files other recipes write (repository-relative) that this one reads: they are built first
    and their content is part of the key.
    """

    script: str  # relative to the project root
    outputs: tuple[str, ...]  # relative to the repository root: "<model>/<version>/<file>"
    args: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # other project files whose content shapes the output
    packages: tuple[str, ...] = ()  # distributions whose version shapes the output
    needs: tuple[str, ...] = ()  # other recipes' outputs it reads, relative to the repository root
    options: tuple[BuildOption, ...] = ()
    # "cpu": the CPU server needs it; "image": the GPU image's export stage builds it (docker/Dockerfile);
    # "gpu": built on a GPU (TensorRT), after the image's artifacts.
    targets: tuple[str, ...] = ("cpu", "image")
    # Cached recipes write into a staging folder kept in the cache by content hash, then installed. An
    # uncached one writes into the repository itself: GPU plans (specific to the GPU they are built on), and
    # scripts that keep a cache of their own (the LLM engine).
    cached: bool = True

    @property
    def models(self) -> tuple[str, ...]:
        """The model folders this recipe writes into."""
        return tuple(dict.fromkeys(Path(o).parts[0] for o in self.outputs))

    def builds_for(self, target: str) -> bool:
        wanted = {"cpu": ("cpu",), "image": ("image",), "gpu": ("image", "gpu")}[target]
        return any(t in wanted for t in self.targets)

    def values(self, options: Mapping[str, str] | None = None) -> dict[str, str]:
        """Each option's value: the one given, else its default."""
        given = options or {}
        return {o.name: given.get(o.name) or o.default for o in self.options}

    def key(self, repository: Path | None = None, options: Mapping[str, str] | None = None) -> str:
        digest = hashlib.sha256()
        for rel in (self.script, *self.sources):
            digest.update(rel.encode())
            digest.update((PROJECT_ROOT / rel).read_bytes())
        for dist in self.packages:
            digest.update(f"{dist}=={_version(dist)}".encode())
        digest.update(f"{sys.version_info[:2]} {self.args} {self.outputs}".encode())
        for rel in self.needs:
            path = (repository or REPOSITORY) / rel
            if not path.is_file():
                raise BuildError(f"{self.script} needs {rel}, which is not built")
            digest.update(f"{rel} {sha256(path)}".encode())
        values = self.values(options)
        for option in self.options:
            digest.update(f"{option.name}={values[option.name]}".encode())
            if option.files:
                for path in option.paths(values[option.name]):  # where the project is does not count
                    name = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
                    digest.update(f"{name} {sha256(path)}".encode())
        return digest.hexdigest()[:20]

    def cache_dir(self, repository: Path | None = None, options: Mapping[str, str] | None = None) -> Path:
        name = Path(self.script).with_suffix("").as_posix().replace("/", "_")
        return cache_root() / "artifacts" / f"{name}-{self.key(repository, options)}"

    def command(self, output: Path, repository: Path, options: Mapping[str, str] | None = None) -> list[str]:
        values = self.values(options)
        for option in self.options:  # the script gets absolute paths, wherever it runs
            if option.files:
                values[option.name] = option.absolute(values[option.name])
        fields = {"output": output, "repository": repository, **values}
        args = [a.format(**fields) for a in self.args]
        return [sys.executable, str(PROJECT_ROOT / self.script), *args]

    def is_current(self, repository: Path, options: Mapping[str, str] | None = None) -> bool:
        """The repository already holds this recipe's cached outputs, byte for byte."""
        cached = self.cache_dir(repository, options)
        return all(
            (cached / name).is_file()
            and (repository / name).is_file()
            and _same_file(cached / name, repository / name)
            for name in self.outputs
        )


def missing(repository: Path, models: list[str], recipes: Mapping[str, Iterable[Recipe]]) -> list[str]:
    """Outputs of ``recipes`` (by the name ``fleet build`` takes: the pipeline) for ``models`` that are not in
    ``repository``, each with the command that builds it."""
    return [
        f"{name} (run `fleet build {build}`)"
        for build, written in recipes.items()
        for recipe in written
        for name in recipe.outputs
        if Path(name).parts[0] in models and not (repository / name).exists()
    ]


class BuildError(RuntimeError):
    """A recipe failed; the message carries the tail of its output."""


def build(
    recipe: Recipe,
    repository: Path = REPOSITORY,
    log: Callable[[str], None] = print,
    options: Mapping[str, str] | None = None,
) -> str:
    """Run ``recipe`` (with the build ``options`` given, by name) unless the cache has its outputs; install
    them into ``repository``.

    Returns "current", "cached" or "built".
    """
    if not recipe.cached:
        _run(recipe, repository, repository, log, options)
        return "built"
    if recipe.is_current(repository, options):
        return "current"
    cached = recipe.cache_dir(repository, options)
    state = "cached"
    if not all((cached / n).is_file() for n in recipe.outputs):
        state = "built"
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=cached.parent))
        try:
            _run(recipe, staging, repository, log, options)
            shutil.rmtree(cached, ignore_errors=True)
            staging.rename(cached)  # atomic: a half-written cache entry is never seen
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for name in recipe.outputs:
        (repository / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(cached / name, repository / name)
    return state


def _run(
    recipe: Recipe,
    out: Path,
    repository: Path,
    log: Callable[[str], None],
    options: Mapping[str, str] | None = None,
) -> None:
    for name in recipe.outputs:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
    cmd = recipe.command(out, repository, options)
    log(" ".join(cmd))
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-25:])
        raise BuildError(f"{recipe.script} failed (exit {proc.returncode}):\n{tail}")
    missing = [n for n in recipe.outputs if not (out / n).is_file()]
    if missing:
        raise BuildError(f"{recipe.script} did not write {missing}")


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
