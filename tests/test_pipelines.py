"""The pipeline registry: what a declaration gives the CLI, the clients, serve and the build, and that every
declared pipeline answers on the real server, alone and all at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tritonfleet import artifacts, cli, clients, pipelines
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.clients import AsyncFleetClient, FleetClient
from tritonfleet.clients.fleet import helpers
from tritonfleet.pipelines.loading import missing_artifacts, models_to_load
from tritonfleet.repository import Repository
from tritonfleet.server import TritonServer

TOY_CLIENT = '''
"""The toy pipeline's client helpers."""
from tritonfleet.clients.call import Call


def toy_double(values):
    """Double the values (FEATURES) of the toy model."""
    return Call("toy_model", {"FEATURES": [values]}, lambda result: result.as_numpy("OUT")[0])


HELPERS = (toy_double,)
'''

TOY = '''
"""A pipeline declared by a test: nothing else in the project mentions it."""
from tritonfleet.artifacts import Recipe
from tritonfleet.pipelines import Command, Pipeline


def _infer_arguments(parser):
    parser.add_argument("values", nargs="+", type=float)


PIPELINE = Pipeline(
    name="toy",
    summary="a test's pipeline",
    public=("toy_model",),
    recipes=(Recipe(script="build/toy.py", outputs=("toy_model/1/model.onnx",), args=("--out", "{output}")),),
    infer=Command("double numbers", _infer_arguments, lambda args, console: 0),
    requires=("toy-runtime==1.0",),
    build_requires=("toy-builder==2.0",),
)
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pipelines.Pipeline]:
    """A new pipeline package and client module in folders the registry and the clients search, as new ones
    in tritonfleet/pipelines/ and clients/ are. (tests/test_new_pipeline.py adds them to a copy of the
    project instead, and serves them.)"""
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "__init__.py").write_text('"""The toy pipeline."""\n')
    (tmp_path / "toy" / "pipeline.py").write_text(textwrap.dedent(TOY))
    (tmp_path / "clients").mkdir()
    (tmp_path / "clients" / "toy.py").write_text(textwrap.dedent(TOY_CLIENT))
    monkeypatch.setattr(pipelines, "__path__", [*pipelines.__path__, str(tmp_path)])
    monkeypatch.setattr(clients, "__path__", [*clients.__path__, str(tmp_path / "clients")])
    pipelines.registry.cache_clear()
    helpers.cache_clear()
    yield pipelines.get("toy")
    monkeypatch.undo()
    pipelines.registry.cache_clear()
    helpers.cache_clear()


def test_a_new_declaration_reaches_every_consumer(toy: pipelines.Pipeline) -> None:
    # the CLI: `fleet infer toy`, `fleet build toy`
    args = cli.parser().parse_args(["infer", "toy", "1", "2.5"])
    assert args.values == [1.0, 2.5] and args.handler(args) == 0
    assert cli.parser().parse_args(["build", "toy"]).pipelines == ["toy"]
    # the build and serve: its recipe, its missing artifact with the command that makes it, its models
    assert toy.recipes[0] in pipelines.recipes("cpu", ["toy"])
    assert toy.recipes[0] in pipelines.recipes("image")
    assert missing_artifacts(REPOSITORY, ["toy_model"], "cpu") == [
        "toy_model/1/model.onnx (run `fleet build toy`)"
    ]
    assert pipelines.expand(["toy", "image_classifier"]) == ["toy_model", "image_classifier"]
    # the set-up and the image: its requirements
    assert "toy-runtime==1.0" in pipelines.requirements(("serve",))
    assert "toy-builder==2.0" in pipelines.requirements(("build",))
    assert "toy-builder==2.0" not in pipelines.requirements(("serve",))

    # the clients: its helper is a method of both clients
    async def async_client() -> AsyncFleetClient:  # grpc.aio wants a running event loop
        return AsyncFleetClient("localhost:1", protocol="grpc")

    for client in (FleetClient("localhost:1"), asyncio.run(async_client())):
        assert "toy_double" in dir(client)
        assert client.toy_double.__doc__ == "Double the values (FEATURES) of the toy model."


def test_unknown_helpers_and_private_names_are_attribute_errors() -> None:
    client = FleetClient("localhost:1")
    with pytest.raises(AttributeError):
        client.no_such_helper  # noqa: B018
    with pytest.raises(AttributeError):
        client._private  # noqa: B018


def test_declarations_agree_with_the_repository() -> None:
    """Public models exist, recipes write into existing model folders, names are unique."""
    names = set(Repository(REPOSITORY).names())
    registry = pipelines.registry()
    public = [m for p in registry.values() for m in p.public]
    assert len(public) == len(set(public)), "a model is public in two pipelines"
    assert set(public) <= names
    for pipeline in registry.values():
        for recipe in pipeline.recipes:
            assert set(recipe.models) <= names, (pipeline.name, recipe.script)
            assert (artifacts.PROJECT_ROOT / recipe.script).is_file(), recipe.script
        assert pipeline.probe is not None, f"{pipeline.name} declares no probe"
    helpers()  # raises if two client modules offer the same helper name
    ids = [m.id for p in registry.values() for m in p.openai]
    assert len(ids) == len(set(ids))


def test_every_model_in_the_repository_belongs_to_a_pipeline() -> None:
    """On each target, the pipelines' closure covers the repository (a model no pipeline loads is dead)."""
    repo = Repository(REPOSITORY)
    loaded = {t: set(models_to_load(REPOSITORY, None, t)) for t in ("cpu", "gpu")}
    assert loaded["cpu"] | loaded["gpu"] == set(repo.names())


@pytest.mark.parametrize("name", sorted(pipelines.registry()))
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_each_pipeline_answers_its_probe(server: TritonServer, name: str, protocol: str) -> None:
    url = server.http_url if protocol == "http" else server.grpc_url
    probe = pipelines.get(name).probe
    assert probe is not None
    with FleetClient(url, protocol=protocol) as fleet:
        probe(fleet)


def test_the_whole_fleet_answers_all_at_once(server: TritonServer) -> None:
    """Every pipeline's probe from its own threads at the same time, over both protocols, three rounds each:
    the fleet's models share two cores and one server, and every answer is still right."""
    errors: list[str] = []
    done: list[str] = []

    def drive(name: str, protocol: str) -> None:
        probe = pipelines.get(name).probe
        assert probe is not None
        url = server.http_url if protocol == "http" else server.grpc_url
        try:
            with FleetClient(url, protocol=protocol) as fleet:
                for _ in range(3):
                    probe(fleet)
                    done.append(name)
        except Exception as exc:  # collected, so one failure does not hide the others
            errors.append(f"{name} over {protocol}: {exc!r}")

    threads = [
        threading.Thread(target=drive, args=(name, protocol))
        for name in pipelines.registry()
        for protocol in ("http", "grpc")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert errors == []
    assert sorted(done) == sorted(name for name in pipelines.registry() for _ in range(6))


def test_serve_loads_the_targets_models(tmp_path: Path) -> None:
    """`fleet serve --target gpu` loads the GPU configs' closure, without the CPU configs: the command line a
    stand-in tritonserver receives, which records it and exits. The closures differ by target
    (tensorrt_llm_passthrough carries rag's sources past the LLM on GPU only)."""
    argv = tmp_path / "argv"
    fake = tmp_path / "tritonserver"
    fake.write_text(f'#!/bin/sh\necho "$@" > {argv}\nexit 3\n')
    fake.chmod(0o755)
    out = subprocess.run(
        [sys.executable, "-m", "tritonfleet.cli", "serve", "--target", "gpu", "--tritonserver", str(fake),
         "--models", "llm", "--keys", str(tmp_path / "keys.json"), "--http-port", "0", "--grpc-port", "0",
         "--metrics-port", "0", "--openai-port", "0", "--verbose"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 1 and "tritonserver exited (3)" in out.stdout, out.stdout + out.stderr
    args = argv.read_text().split()
    loaded = [a.removeprefix("--load-model=") for a in args if a.startswith("--load-model=")]
    assert loaded == models_to_load(REPOSITORY, ["llm"], "gpu")
    assert "tensorrt_llm" in loaded and "ensemble" in loaded
    assert "tensorrt_llm_passthrough" in models_to_load(REPOSITORY, ["rag"], "gpu")
    assert "tensorrt_llm_passthrough" not in models_to_load(REPOSITORY, ["rag"], "cpu")
    assert "--model-config-name=cpu" not in argv.read_text()


def test_fleet_pipelines_lists_each_pipelines_parts() -> None:
    """`fleet pipelines NAME`: its models (steps too), recipes, client helpers, commands and files."""
    out = subprocess.run(
        [sys.executable, "-m", "tritonfleet.cli", "pipelines", "image_classifier"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for part in (
        "image_preprocess",
        "image_classifier (public)",
        "build/image_classifier/export_onnx.py -> efficientnet_lite0/1/model.onnx",
        "FleetClient.classify_image(image, top_k=5)",
        "fleet infer image_classifier",
        "fleet bench image_classifier",
        "pillow>=10.4",
        "tritonfleet/pipelines/image_classifier/",
        "clients/image_classifier.py",
        "model_repository/efficientnet_lite0/",
        "tests/image_classifier/",
    ):
        assert part in out, (part, out)
    every = subprocess.run(
        [sys.executable, "-m", "tritonfleet.cli", "pipelines"], capture_output=True, text=True, check=True
    ).stdout
    assert all(f"{name}: {p.summary}" in every for name, p in pipelines.registry().items())
    assert "tensorrt_llm_passthrough (gpu only)" in every


def test_a_pipeline_is_named_for_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its parts are found by its name (``fleet pipelines``): a declaration in another package is refused."""
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "__init__.py").write_text("")
    (tmp_path / "other" / "pipeline.py").write_text(textwrap.dedent(TOY))
    monkeypatch.setattr(pipelines, "__path__", [*pipelines.__path__, str(tmp_path)])
    pipelines.registry.cache_clear()
    try:
        with pytest.raises(ValueError, match="declares the pipeline 'toy', not 'other'"):
            pipelines.registry()
    finally:
        monkeypatch.undo()
        pipelines.registry.cache_clear()
