"""What ``fleet serve --models NAMES`` loads, and which of its artifacts are not built: the pipelines'
declarations read against the repository's configs for one target."""

from __future__ import annotations

from pathlib import Path

from tritonfleet import artifacts, pipelines
from tritonfleet.repository import Repository


def models_to_load(repository: Path, names: list[str] | None = None, target: str = "cpu") -> list[str]:
    """``names`` (pipelines or models; default every pipeline) as the models to load: each pipeline's public
    models, then everything those call on ``target`` (ensemble steps, BLS models), dependencies first."""
    wanted = pipelines.expand(names or list(pipelines.registry()))
    return Repository(repository).closure(wanted, target)


def missing_artifacts(repository: Path, models: list[str], target: str = "cpu") -> list[str]:
    """What the recipes for ``target`` promise ``models`` and ``repository`` lacks, with the build command."""
    recipes = {p.name: [r for r in p.recipes if r.builds_for(target)] for p in pipelines.registry().values()}
    return artifacts.missing(repository, models, recipes)
