"""The layers of the package, checked without a server: every module's imports (parsed, module-level and
inside functions) look only down, and no modules import each other in a cycle.

The layer map, bottom to top (a module imports its own layer and those below it):

0. bottom: ``tritonfleet`` (the package), ``errors``, ``defaults``, ``spec``, the Python backend's shared
   code, ``backends`` (the CPU server's Python-based backends), and in each pipeline package everything but
   its declaration, commands and benchmark: its ``interface.py`` and model logic (the code the model
   repository's ``model.py`` files run).
1. core: ``repository``, ``artifacts`` (the build cache), ``server`` (the tritonserver launcher),
   ``validate``, ``status``, and the clients (``tritonfleet.clients``, from ``clients/``).
2. declarations: the pipeline registry (``tritonfleet.pipelines``), each pipeline's ``pipeline.py`` (recipes,
   probe), ``commands.py`` (``fleet infer`` / ``fleet bench`` arguments and runs) and ``calibration.py`` (real
   inputs for the GPU build), what the registry's declarations give ``fleet serve`` (``pipelines.loading``)
   and ``fleet pipelines`` (``pipelines.layout``), the floor benchmarks' command (``pipelines.floor_bench``),
   and the system benchmarks' command declarations (``benches``).
3. serving: the front door, the OpenAI app, the supervisor, the fleet (``fleet serve``), and the serving
   features that are packages of their own (batch, console, deploy, monitoring, plan, tune).
4. top: the CLI.

Apart: the tools (``tritonfleet.tools``: benchmarks' machinery, fuzzers, stress, soak; and each pipeline's
``bench``), the ``tools`` extra. They may import anything; the runtime imports them only inside the function
that runs one (a benchmark, ``fleet stress``), because the extra is optional (the serving image has none of
it): those are the only imports of project modules allowed inside functions. Imports under
``if TYPE_CHECKING:`` are annotations and do not count.

A package's ``__init__`` runs whenever any module inside it is imported (the model code in tritonserver's
stubs imports ``tritonfleet.pipelines.<name>.<module>``, which runs ``tritonfleet.pipelines`` first), so it
may import at run time nothing above the lowest layer of its modules. The model repository's ``model.py``
files and the recipes in ``build/`` are entry points over the bottom and core layers.
"""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pytest

from tritonfleet.artifacts import PROJECT_ROOT

BOTTOM, CORE, DECLARATIONS, SERVING, TOP = range(5)
TOOLS = 10  # apart: may import anything, imported by the runtime only inside functions
NAMES = {BOTTOM: "bottom", CORE: "core", DECLARATIONS: "declarations", SERVING: "serving", TOP: "top"}
NAMES[TOOLS] = "tools"

# The layer map: module name patterns (fnmatch: ``*`` spans dots), the first that matches places a module.
LAYER_MAP: list[tuple[str, int]] = [
    ("tritonfleet.tools", TOOLS),
    ("tritonfleet.tools.*", TOOLS),
    ("tritonfleet.pipelines.*.bench", TOOLS),
    ("tritonfleet.pipelines.*.bench.*", TOOLS),
    ("tritonfleet.pipelines", DECLARATIONS),
    ("tritonfleet.pipelines.__main__", DECLARATIONS),
    ("tritonfleet.pipelines.loading", DECLARATIONS),
    ("tritonfleet.pipelines.layout", DECLARATIONS),
    ("tritonfleet.pipelines.floor_bench", DECLARATIONS),
    ("tritonfleet.pipelines.*.pipeline", DECLARATIONS),
    ("tritonfleet.pipelines.*.commands", DECLARATIONS),
    ("tritonfleet.pipelines.*.calibration", DECLARATIONS),  # its models' real inputs for TensorRT's int8
    ("tritonfleet.pipelines.*", BOTTOM),  # a pipeline's package, interface.py and model logic
    ("tritonfleet", BOTTOM),
    ("tritonfleet.errors", BOTTOM),
    ("tritonfleet.defaults", BOTTOM),
    ("tritonfleet.spec", BOTTOM),
    ("tritonfleet.spec.*", BOTTOM),
    ("tritonfleet.python_backend", BOTTOM),
    ("tritonfleet.backends.*", BOTTOM),
    ("tritonfleet.repository", CORE),
    ("tritonfleet.artifacts", CORE),
    ("tritonfleet.server", CORE),
    ("tritonfleet.validate", CORE),
    ("tritonfleet.status", CORE),
    ("tritonfleet.clients", CORE),
    ("tritonfleet.clients.*", CORE),
    ("tritonfleet.benches", DECLARATIONS),
    ("tritonfleet.frontdoor", SERVING),
    ("tritonfleet.frontdoor.*", SERVING),
    ("tritonfleet.openai", SERVING),
    ("tritonfleet.openai.*", SERVING),
    ("tritonfleet.supervisor", SERVING),
    ("tritonfleet.fleet", SERVING),
    *(
        (f"tritonfleet.{feature}{tail}", SERVING)
        for feature in ("batch", "console", "deploy", "monitoring", "plan", "tune")
        for tail in ("", ".*")
    ),
    ("tritonfleet.cli", TOP),
    ("tritonfleet.__main__", TOP),
]
ENTRY_POINTS = CORE  # model_repository/*/<version>/model.py and build/**/*.py import this layer at most


def layer(module: str) -> int:
    for pattern, found in LAYER_MAP:
        if fnmatch.fnmatchcase(module, pattern):
            return found
    raise LookupError(f"{module} is in no layer: place it in LAYER_MAP (tests/test_layers.py)")


def source_modules(root: Path = PROJECT_ROOT) -> dict[str, Path]:
    """Every module of the package by name: ``tritonfleet/**.py``, and ``clients/`` as tritonfleet.clients."""
    found = {}
    for base, package in ((root / "tritonfleet", "tritonfleet"), (root / "clients", "tritonfleet.clients")):
        for path in sorted(base.rglob("*.py")):
            parts = [package, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    in_function: bool


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(name: str, path: Path, known: set[str]) -> list[Import]:
    """The project modules ``name`` imports: ``from a import b`` is ``a.b`` where that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    class Visitor(ast.NodeVisitor):
        depth = 0

        def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
            self.depth += 1
            self.generic_visit(node)
            self.depth -= 1

        visit_AsyncFunctionDef = visit_FunctionDef

        def visit_If(self, node: ast.If) -> None:
            for child in node.orelse if _type_checking(node) else [node.test, *node.body, *node.orelse]:
                self.visit(child)

        def visit_Import(self, node: ast.Import) -> None:
            for alias in node.names:
                self.add(alias.name, node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            for alias in node.names:
                self.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base, node)

        def add(self, target: str, node: ast.stmt) -> None:
            if target.split(".")[0] == "tritonfleet":
                found.append(Import(name, target, node.lineno, self.depth > 0))

    Visitor().visit(ast.parse(path.read_text(), str(path)))
    return found


def problems(root: Path = PROJECT_ROOT) -> list[str]:
    """Every upward or hidden import and every cycle, each named by file and line."""
    modules = source_modules(root)
    known = set(modules)
    found: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        own = layer(name)
        inside = [layer(m) for m in modules if m == name or m.startswith(f"{name}.")]
        for imp in imports(name, path, known):
            if imp.target not in known:
                found.append(f"{path}:{imp.line}: {name} imports {imp.target}, which is not a module")
                continue
            graph[name].add(imp.target)
            target = layer(imp.target)
            where = f"{path.relative_to(root)}:{imp.line}: {name} ({NAMES[own]})"
            what = f"{imp.target} ({NAMES[target]})"
            if imp.in_function and target != TOOLS:
                found.append(f"{where} imports {what} inside a function: import it at the top")
            elif not imp.in_function and own != TOOLS and target == TOOLS:
                found.append(f"{where} imports {what}, the optional tools extra, at the top")
            elif own != TOOLS and target != TOOLS and target > own:
                found.append(f"{where} imports {what}, a layer above it")
            elif path.name == "__init__.py" and not imp.in_function and target > min(inside):
                found.append(
                    f"{where} is a package that runs before its {NAMES[min(inside)]} modules,"
                    f" yet imports {what}"
                )
    found += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    members, path = set(group), [group[0]]
    while True:
        nxt = min(m for m in graph[path[-1]] if m in members)
        if nxt in path:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)


def entry_point_problems(root: Path = PROJECT_ROOT) -> list[str]:
    """``model.py`` files and build recipes that import above the core layer (or the tools)."""
    known = set(source_modules(root))
    scripts = [*root.glob("model_repository/*/[0-9]*/model.py"), *root.glob("build/**/*.py")]
    found = []
    for path in sorted(scripts):
        for imp in imports(path.stem, path, known):
            if imp.target in known and layer(imp.target) > ENTRY_POINTS:
                found.append(
                    f"{path.relative_to(root)}:{imp.line} imports {imp.target} ({NAMES[layer(imp.target)]})"
                )
    return found


def test_every_module_is_placed_in_a_layer() -> None:
    for name in source_modules():
        layer(name)  # raises, naming the module


def test_imports_only_look_down_and_never_in_a_cycle() -> None:
    assert problems() == []


def test_model_code_and_recipes_import_the_bottom_and_core_layers_only() -> None:
    assert entry_point_problems() == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("tritonfleet.server", "from tritonfleet import pipelines\n", "a layer above it"),
        ("tritonfleet.artifacts", "def f():\n    from tritonfleet import pipelines\n", "inside a function"),
        ("tritonfleet.fleet", "from tritonfleet.tools import soak\n", "the optional tools extra, at the top"),
        ("tritonfleet.pipelines", "from tritonfleet import artifacts\n", "runs before its bottom modules"),
        ("tritonfleet.repository", "from tritonfleet import validate\n", "import cycle"),
    ],
)
def test_the_check_finds_what_it_forbids(tmp_path: Path, module: str, source: str, expected: str) -> None:
    """The check on a copy of the package with one import added (validate already imports repository)."""
    import shutil

    for folder in ("tritonfleet", "clients"):
        shutil.copytree(
            PROJECT_ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    path = source_modules(tmp_path)[module]
    path.write_text(path.read_text() + "\n" + source)
    assert any(expected in p for p in problems(tmp_path)), problems(tmp_path)
