"""Packaging, without a server: the wheel holds every module and data file of the package; what the serving
image runs (``fleet``, ``python -m tritonfleet.pipelines``, the imports of the repository's ``model.py``
files) imports from the unpacked wheel with only the runtime's dependencies importable (no extra: not the
tools, the build, the tests, nor, on GPU, the CPU target's); each version is written in one place."""

from __future__ import annotations

import email.parser
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import copy_sources
from tests.test_layers import imports, source_modules
from tritonfleet import pipelines
from tritonfleet.artifacts import PROJECT_ROOT, REPOSITORY
from tritonfleet.repository import Repository

CONSOLE_BUNDLE = PROJECT_ROOT / "tritonfleet" / "console" / "static"  # scripts/setup.sh builds it
FAKE = PROJECT_ROOT / "tests" / "fake_pb_utils.py"  # triton_python_backend_utils, as the stub gives it


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the tracked files and the console's bundle (as the image's build stage has them: the
    set-up, or the image's console stage, builds the bundle, which git ignores), unpacked."""
    work = tmp_path_factory.mktemp("wheel")
    copy_sources(work / "src")
    if not (CONSOLE_BUNDLE / "index.html").is_file():
        pytest.fail(f"no console bundle in {CONSOLE_BUNDLE.relative_to(PROJECT_ROOT)}: run make setup")
    shutil.copytree(CONSOLE_BUNDLE, work / "src" / CONSOLE_BUNDLE.relative_to(PROJECT_ROOT))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
         str(work / "dist"), str(work / "src")],
        check=True, capture_output=True,
    )  # fmt: skip
    (built,) = (work / "dist").glob("tritonfleet-*.whl")
    with zipfile.ZipFile(built) as archive:
        archive.extractall(work / "unpacked")
    return work / "unpacked"


def test_the_wheel_holds_every_module_and_data_file(wheel: Path) -> None:
    for name, path in source_modules().items():
        installed = wheel / Path(*name.split(".")) / ("__init__.py" if path.name == "__init__.py" else "")
        if path.name != "__init__.py":
            installed = installed.with_suffix(".py")
        assert installed.is_file(), f"{name} ({path.relative_to(PROJECT_ROOT)}) is not in the wheel"
    tracked = subprocess.run(
        ["git", "ls-files", "tritonfleet", "clients"], cwd=PROJECT_ROOT, capture_output=True, text=True
    ).stdout.split()
    data = [Path(n) for n in tracked if not n.endswith(".py")]
    assert Path("tritonfleet/pipelines/tabular/bench/peers/rows.lua") in data
    console_sources = Path("tritonfleet/console/web")  # bundled into console/static/ at set-up, not shipped
    assert any(path.is_relative_to(console_sources) for path in data)
    for path in data:
        if path.is_relative_to(console_sources):
            assert not (wheel / path).exists(), f"{path} (a console source) is in the wheel"
            continue
        inside = Path("tritonfleet/clients", *path.parts[1:]) if path.parts[0] == "clients" else path
        assert (wheel / inside).is_file(), f"{path} is not in the wheel"
    for name in ("index.html", "console.js", "console.css"):  # the bundle: package data that git ignores
        assert (wheel / "tritonfleet" / "console" / "static" / name).is_file(), name
    (info,) = wheel.glob("tritonfleet-*.dist-info")
    assert "fleet = tritonfleet.cli:main" in (info / "entry_points.txt").read_text()


def requires_dist(wheel: Path) -> list[str]:
    (info,) = wheel.glob("tritonfleet-*.dist-info")
    return email.parser.Parser().parsestr((info / "METADATA").read_text()).get_all("Requires-Dist") or []


def closure(requirements: Iterable[str], extras: tuple[str, ...] = ()) -> set[str]:
    """The installed distributions ``requirements`` need (with ``extras`` of the first level), recursively."""
    found: set[str] = set()
    todo = [(Requirement(r), ("", *extras)) for r in requirements]
    while todo:
        requirement, wanted = todo.pop()
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in wanted):
            continue
        name = canonical(requirement.name)
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in found:
            continue
        found |= {key, name}
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [(Requirement(r), ("", *requirement.extras)) for r in dist.requires or []]
    return {n for n in found if "[" not in n}


def blocked_imports(allowed: set[str]) -> list[str]:
    """Top-level import names that only installed distributions outside ``allowed`` provide."""
    return sorted(
        name
        for name, dists in importlib.metadata.packages_distributions().items()
        if not {canonical(d) for d in dists} & (allowed | {"tritonfleet"})
    )


CHECK = """
import importlib, importlib.util, json, runpy, sys, io, contextlib
WHEEL, BLOCKED, MODULES = sys.argv[1], set(json.loads(sys.argv[2])), json.loads(sys.argv[3])

class Absent:
    '''Distributions the environment under test lacks: their modules do not import.'''
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in this environment)", name=name)

sys.path.insert(0, WHEEL)
# What tritonserver's Python stub provides its models: the tests' fake of it.
spec = importlib.util.spec_from_file_location("triton_python_backend_utils", sys.argv[4])
sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules[spec.name])  # before Absent: it reads the real one's source
sys.meta_path.insert(0, Absent())
for module in MODULES:
    importlib.import_module(module)
from tritonfleet import cli
cli.parser()
out = io.StringIO()
sys.argv = ["python -m tritonfleet.pipelines", "requirements", "serve"]
with contextlib.redirect_stdout(out):
    runpy.run_module("tritonfleet.pipelines", run_name="__main__")
def where(m):  # a namespace package (no __init__.py) has its folders only
    return getattr(m, "__file__", None) or next(iter(getattr(m, "__path__", [])), "")
ours = {n: where(m) for n, m in sys.modules.items() if n.startswith("tritonfleet")}
print(json.dumps({"requirements": out.getvalue().split(), "modules": ours}))
"""


def model_imports(target: str) -> list[str]:
    """The project modules the repository's Python models import on ``target``."""
    repo = Repository(REPOSITORY)
    known = set(source_modules())
    found: list[str] = []
    for name in repo.names():
        model = REPOSITORY / name / "1" / "model.py"
        if repo.config(name, target).backend == "python" and model.is_file():
            found += [i.target for i in imports(name, model, known) if i.target not in found]
    return found


@pytest.mark.parametrize(("target", "extras"), [("gpu", ()), ("cpu", ("cpu",))])
def test_the_image_entry_points_import_from_the_wheel_with_runtime_dependencies_only(
    wheel: Path, target: str, extras: tuple[str, ...]
) -> None:
    """``gpu``: the serving image (the wheel, its runtime dependencies and the pipelines' serving
    requirements); ``cpu``: the same plus the cpu extra, for the CPU configs' models (the LLM engine)."""
    runtime = [r for r in requires_dist(wheel) if "extra ==" not in r]
    chosen = [r for r in requires_dist(wheel) if any(f'extra == "{e}"' in r for e in extras)]
    allowed = closure([*runtime, *chosen, *pipelines.requirements(("serve",))], extras)
    blocked = blocked_imports(allowed)
    assert {"matplotlib", "torch", "pytest", "skimage"} <= set(blocked)  # the tools, build and test extras
    if target == "gpu":
        assert {"pytriton", "onnxruntime_genai"} <= set(blocked)
    modules = ["tritonfleet.fleet", "tritonfleet.openai", *model_imports(target)]
    out = subprocess.run(
        [sys.executable, "-I", "-c", CHECK, str(wheel), json.dumps(blocked), json.dumps(modules), str(FAKE)],
        cwd=wheel, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["requirements"] == pipelines.requirements(("serve",))
    loaded = result["modules"]
    assert all(f.startswith(str(wheel)) for f in loaded.values()), loaded  # the wheel's, not the source's
    assert not [m for m in loaded if m.startswith("tritonfleet.tools") or "bench" in m.split(".")], loaded
    assert "tritonfleet.pipelines.llm.engine" in loaded or target == "gpu"


def versioned(requirements: Iterable[str]) -> list[str]:
    """The names of those of ``requirements`` that give a version."""
    split = map(pipelines.split_requirement, requirements)
    return [canonical(name) for name, _, version in split if version]


def test_each_version_is_written_once() -> None:
    """pyproject.toml (dependencies and extras) and the pipelines' declarations give each distribution a
    version at most once; a pipeline's bare requirement takes pyproject's; set-up and image pin nothing."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    places = [("dependencies", project["dependencies"])]
    places += [(f"extra {name}", reqs) for name, reqs in project["optional-dependencies"].items()]
    for p in pipelines.registry().values():
        places.append((f"pipeline {p.name}", [*p.requires, *p.build_requires, *p.build_requires_no_deps]))
    where: dict[str, list[str]] = {}
    for place, requirements in places:
        for name in versioned(requirements):
            where.setdefault(name, []).append(place)
    assert {n: p for n, p in where.items() if len(p) > 1} == {}
    for p in pipelines.registry().values():
        for requirement in p.requires + p.build_requires:
            assert pipelines.split_requirement(pipelines.pinned(requirement))[2], requirement
    assert pipelines.pinned("tokenizers") == f"tokenizers{pipelines.project_pins()['tokenizers']}"
    pin = re.compile(r"[A-Za-z0-9][\w.-]*(\[[^\]]*\])?==\d")
    for script in ("scripts/setup.sh", "docker/Dockerfile"):
        lines = (PROJECT_ROOT / script).read_text().splitlines()
        assert not [line for line in lines if pin.search(line) and not line.lstrip().startswith("#")], script
