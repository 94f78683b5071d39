"""Where a pipeline's parts are (``fleet pipelines NAME``): its models, recipes, client helpers, commands,
requirements and files, found from its declaration and the places a pipeline's code goes by convention:
``tritonfleet/pipelines/<name>/``, ``clients/<name>.py``, ``build/<dir>/`` (its recipes' scripts),
``model_repository/<model>/`` and ``tests/<name>/``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path

from tritonfleet import artifacts, pipelines
from tritonfleet.clients.fleet import helpers
from tritonfleet.pipelines.loading import models_to_load
from tritonfleet.repository import TARGETS


def _shown(path: Path) -> str:
    try:
        text = path.resolve().relative_to(artifacts.PROJECT_ROOT).as_posix()
    except ValueError:
        text = str(path)
    return text + ("/" if path.is_dir() else "")


def client_helpers(pipeline: pipelines.Pipeline) -> list[str]:
    """``name(signature)`` of each helper that ``clients/<pipeline>.py`` offers ``FleetClient``."""
    module = f"tritonfleet.clients.{pipeline.name}"
    found = []
    for name, helper in helpers().items():
        if helper.__module__ == module:
            parameters = inspect.signature(helper).parameters.values()
            found.append(f"{name}({', '.join(str(p.replace(annotation=p.empty)) for p in parameters)})")
    return found


def files(pipeline: pipelines.Pipeline, repository: Path) -> list[str]:
    """The folders and files that hold the pipeline, those that exist, in the order a reader wants them."""
    package = importlib.import_module(f"{pipelines.__name__}.{pipeline.name}")
    found = [Path(package.__file__ or "").parent]
    client = importlib.util.find_spec(f"tritonfleet.clients.{pipeline.name}")
    if client is not None and client.origin:
        found.append(Path(client.origin))
    scripts = [artifacts.PROJECT_ROOT / r.script for r in pipeline.recipes]
    build = artifacts.PROJECT_ROOT / "build"
    found += sorted(
        {s if s.parent == build else s.parent for s in scripts}
    )  # build/<dir>/, or a shared script
    found += [repository / m for m in models(pipeline, repository)]
    found.append(artifacts.PROJECT_ROOT / "tests" / pipeline.name)
    return [_shown(p) for p in dict.fromkeys(found) if p.exists()]


def models(pipeline: pipelines.Pipeline, repository: Path) -> dict[str, tuple[str, ...]]:
    """Its public models and every model they call, each with the targets that load it."""
    loaded = {t: models_to_load(repository, [pipeline.name], t) for t in TARGETS}
    every = dict.fromkeys(m for t in TARGETS for m in loaded[t])
    return {m: tuple(t for t in TARGETS if m in loaded[t]) for m in every}


def _model(name: str, targets: tuple[str, ...], public: tuple[str, ...]) -> str:
    notes = (["public"] if name in public else []) + ([f"{targets[0]} only"] if len(targets) == 1 else [])
    return f"{name} ({', '.join(notes)})" if notes else name


def describe(pipeline: pipelines.Pipeline, repository: Path) -> dict[str, list[str]]:
    """What ``fleet pipelines NAME`` prints, by heading."""
    return {
        "models": [_model(m, t, pipeline.public) for m, t in models(pipeline, repository).items()],
        "recipes": [
            f"{r.script} -> {', '.join(r.outputs)} [{', '.join(r.targets)}]" for r in pipeline.recipes
        ],
        "helpers": [f"FleetClient.{h}" for h in client_helpers(pipeline)],
        "commands": [
            f"fleet {kind} {pipeline.name}: {command.help}"
            for kind, command in (("infer", pipeline.infer), ("bench", pipeline.bench))
            if command is not None
        ],
        "openai": [f"{m.id} ({m.kind})" for m in pipeline.openai],
        "requires": [*map(pipelines.pinned, pipeline.requires)],
        "builds with": [*map(pipelines.pinned, pipeline.build_requires + pipeline.build_requires_no_deps)],
        "files": files(pipeline, repository),
    }
