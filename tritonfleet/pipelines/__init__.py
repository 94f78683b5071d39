"""The fleet's pipelines, discovered: each subpackage ``tritonfleet/pipelines/<name>/`` declares one as
``PIPELINE`` in its ``pipeline.py``.

A pipeline is one subpackage here (its declaration, interface, model logic, ``fleet infer`` / ``fleet bench``
commands and benchmark), its client helpers (``clients/<name>.py``), build recipes (``build/<name>/``), model
folders (``model_repository/``) and tests (``tests/<name>/``); ``fleet pipelines NAME`` lists them. The
declaration names the models clients call (``public``; the steps those depend on come from the repository's
configs), the build recipes that make its artifacts, its commands, a probe (one real request whose answer is
checked, for tests and the supervisor), its pip requirements, the OpenAI-API models it serves, its latency
objective and its page in the web console. The CLI, ``fleet serve``, the set-up, the Docker build, the
Prometheus rules, the console and the tests read this registry; adding a pipeline adds files and edits none.

Any module of a pipeline package runs this one first (the model code in tritonserver's Python stubs too),
so it imports nothing of the project at run time; the declarations import what they need themselves.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.metadata
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from tritonfleet.artifacts import BuildOption, Recipe
    from tritonfleet.clients.fleet import FleetClient


def names(text: str) -> list[str]:
    """A comma-separated command-line list: ``"a, b"`` -> ``["a", "b"]``."""
    return [n.strip() for n in text.split(",") if n.strip()]


def ints(text: str) -> list[int]:
    """A comma-separated list of integers (``--concurrency 1,4,16``)."""
    return [int(n) for n in names(text)]


@dataclass(frozen=True)
class Command:
    """A pipeline's ``fleet infer`` or ``fleet bench`` sub-command."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Console], int]


@dataclass(frozen=True)
class OpenAIModel:
    """A model the OpenAI-compatible API serves under ``id`` (``/v1/models``; see docs/openai.md).

    ``kind`` is "chat" (``/v1/chat/completions`` and ``/v1/completions`` through the LLM interface of
    TensorRT-LLM's ensemble: ``stream_model`` for streamed requests and those asking for logprobs,
    ``unary_model`` for the others, through a gRPC stream where it is decoupled) or "embedding"
    (``/v1/embeddings`` through ``unary_model``, which takes ``TEXT`` and returns ``EMBEDDING`` and
    ``NUM_TOKENS``). ``tokenizer`` is the model folder whose version
    folder holds the tokenizer files (``tokenizer/``: tokenizer.json, tokenizer_config.json,
    chat_template.jinja). ``engine`` is the model whose config parameters ``max_seq_len`` and ``max_tokens``
    bound a request, where it has them (the CPU ``tensorrt_llm``; elsewhere the tokenizer's
    ``model_max_length``). ``prompt`` says how chat messages become ``text_input``: "chat_template" (the API
    renders them with the model's own template) or "question" (the last user message as it is: the pipeline
    builds its prompt itself, as ``rag`` does). ``extra_inputs`` are request fields passed as the input
    tensors of the same name (``num_sources``), ``extra_outputs`` output tensors returned as response fields
    of the same name (``sources``).
    """

    id: str
    kind: str
    unary_model: str
    stream_model: str | None = None
    tokenizer: str | None = None
    engine: str | None = None
    prompt: str = "chat_template"
    extra_inputs: tuple[str, ...] = ()
    extra_outputs: tuple[str, ...] = ()
    owned_by: str = "tritonfleet"
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Slo:
    """A pipeline's latency objective, which Prometheus alerts on (``tritonfleet.monitoring.rules``).

    ``p99_seconds``: the 99th percentile of its requests' duration at the front door (a stream's until its
    last byte), over its public models and its ``/v1`` models. ``ttft_p99_seconds``: the 99th percentile of
    the time to first token of the LLM steps it runs. The values hold for the CPU fleet under its benchmarks'
    load; a GPU deployment declares its own.
    """

    p99_seconds: float
    ttft_p99_seconds: float | None = None


@dataclass(frozen=True)
class Playground:
    """How the web console (``tritonfleet/console``) lets a person try the pipeline; one that declares none
    gets the generic "form" (an input per tensor of its models' configs, the outputs as they come).

    ``kind`` names the page: "chat" (the pipeline's OpenAI chat models, on the chat page), "image" (an
    encoded image in, the top classes out), "texts" (texts in, their embeddings' cosine similarities),
    "tabular" (a form of the config's feature names in, class probabilities out) or "form". ``models``:
    the public models it calls, one tab each (default: the pipeline's public models). ``params``: what the
    page needs to know, JSON values: tensor and config-parameter names, examples (docs/console.md lists
    each kind's).
    """

    kind: str
    models: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    """One pipeline of the fleet (see the module docstring)."""

    name: str
    summary: str
    public: tuple[str, ...]  # models clients may call; the front door exposes these and no other
    recipes: tuple[Recipe, ...] = ()
    infer: Command | None = None
    bench: Command | None = None
    probe: Callable[[FleetClient], None] | None = None  # raises AssertionError on a wrong answer
    # Other real requests that load tests send beside the probe (``fleet soak``), checked like it.
    traffic: tuple[Callable[[FleetClient], None], ...] = ()
    # pip requirements of its serving-time models (CPU venv, GPU image) and what its build recipes need
    # besides (every build installs both): a bare name takes its version from pyproject.toml, where the
    # project pins it; a version written here is that distribution's only one.
    requires: tuple[str, ...] = ()
    build_requires: tuple[str, ...] = ()
    build_requires_no_deps: tuple[str, ...] = ()  # installed with pip --no-deps (their own are not needed)
    openai: tuple[OpenAIModel, ...] = ()
    slo: Slo | None = None  # its latency objective (alerts); None: no latency alert
    playground: Playground | None = None  # its page in the web console; None: the generic form


@functools.cache
def registry() -> dict[str, Pipeline]:
    """Every declared pipeline by name (the name of its package), in name order."""
    found: dict[str, Pipeline] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or not info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}.pipeline")
        pipeline = getattr(module, "PIPELINE", None)
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"{module.__name__} declares no PIPELINE = Pipeline(...)")
        if pipeline.name != info.name:  # its parts are found by its name (tritonfleet.pipelines.layout)
            raise ValueError(f"{module.__name__} declares the pipeline {pipeline.name!r}, not {info.name!r}")
        if pipeline.name in found:
            raise ValueError(f"two pipelines are named {pipeline.name!r}")
        found[pipeline.name] = pipeline
    return found


def openai_models() -> dict[str, OpenAIModel]:
    """Every model the OpenAI-compatible API serves, by id; two pipelines declaring one id is an error."""
    found: dict[str, OpenAIModel] = {}
    for pipeline in registry().values():
        for model in pipeline.openai:
            if model.id in found:
                raise ValueError(f"two pipelines declare the OpenAI model {model.id!r}")
            found[model.id] = model
    return found


def get(name: str) -> Pipeline:
    try:
        return registry()[name]
    except KeyError:
        raise KeyError(f"unknown pipeline {name!r}; choose from {sorted(registry())}") from None


def public_models() -> dict[str, Pipeline]:
    """Each public model and the pipeline that declares it."""
    return {model: p for p in registry().values() for model in p.public}


def expand(names: list[str]) -> list[str]:
    """Pipeline names replaced by their public models; model names kept (``fleet serve --models``)."""
    out: list[str] = []
    for name in names:
        for model in registry()[name].public if name in registry() else (name,):
            if model not in out:
                out.append(model)
    return out


def recipes(target: str, names: list[str] | None = None) -> list[Recipe]:
    """The recipes that make ``target``'s artifacts, for the named pipelines (default: all), each after the
    recipes that write the files it ``needs`` (those are included when their pipeline is not named)."""
    every = [r for p in registry().values() for r in p.recipes if r.builds_for(target)]
    writer = {output: r for r in every for output in r.outputs}
    chosen = [r for n in names for r in get(n).recipes if r.builds_for(target)] if names else every
    ordered: list[Recipe] = []

    def add(recipe: Recipe, path: tuple[Recipe, ...]) -> None:
        if recipe in ordered:
            return
        if recipe in path:  # recipes, not scripts: two recipes may run one script (tabular's, per model)
            cycle = " -> ".join(r.script for r in (*path, recipe))
            raise ValueError(f"recipes need each other's outputs: {cycle}")
        for need in recipe.needs:
            if need in writer:
                add(writer[need], (*path, recipe))
        ordered.append(recipe)

    for recipe in chosen:
        add(recipe, ())
    return ordered


def build_options() -> dict[str, BuildOption]:
    """Every build option of every recipe by name (``fleet build --NAME``); one name, one meaning."""
    found: dict[str, BuildOption] = {}
    for pipeline in registry().values():
        for recipe in pipeline.recipes:
            for option in recipe.options:
                if found.setdefault(option.name, option) != option:
                    raise ValueError(f"two recipes declare the build option {option.name!r} differently")
    return found


KINDS = ("serve", "build", "build-no-deps")


def requirements(kinds: tuple[str, ...] = ("serve", "build")) -> list[str]:
    """The pip requirements the pipelines declare, deduplicated, each with its version (a bare name's from the
    installed tritonfleet's metadata: pyproject.toml). ``python -m tritonfleet.pipelines requirements``."""
    out: list[str] = []
    for pipeline in registry().values():
        declared = {
            "serve": pipeline.requires,
            "build": pipeline.build_requires,
            "build-no-deps": pipeline.build_requires_no_deps,
        }
        for kind in kinds:
            for requirement in map(pinned, declared[kind]):
                if requirement not in out:
                    out.append(requirement)
    return out


REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)")


def split_requirement(requirement: str) -> tuple[str, str, str]:
    """``"Foo_Bar[x]>=1; marker"`` -> ``("foo-bar", "[x]", ">=1")``: the canonical name, extras, version."""
    match = REQUIREMENT.fullmatch(requirement.split(";", 1)[0])
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    name, extras, version = match.groups()
    return re.sub(r"[-_.]+", "-", name).lower(), extras or "", version.strip()


@functools.cache
def project_pins() -> dict[str, str]:
    """Each distribution the project's own requirements (pyproject.toml: dependencies and extras) give a
    version, canonical name -> version specifier, from the installed tritonfleet's metadata."""
    pins: dict[str, str] = {}
    for requirement in importlib.metadata.requires("tritonfleet") or []:
        name, _, version = split_requirement(requirement)
        if version and name != "tritonfleet":
            pins[name] = version
    return pins


def runtime_requirements() -> list[str]:
    """The package's own dependencies (pyproject.toml's ``dependencies``: no extra), as its metadata lists
    them, markers dropped."""
    return [
        r.split(";", 1)[0].strip()
        for r in importlib.metadata.requires("tritonfleet") or []
        if "extra ==" not in r.split(";", 1)[-1]
    ]


def pinned(requirement: str) -> str:
    """``requirement`` with its version: as written when it has one, else the project's pin of that name."""
    name, _, version = split_requirement(requirement)
    if version:
        return requirement
    pin = project_pins().get(name)
    if pin is None:
        raise ValueError(f"{requirement!r} has no version: give one, or pin it in pyproject.toml")
    return f"{requirement.strip()}{pin}"
