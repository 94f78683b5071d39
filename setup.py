"""Packaging beside pyproject.toml: every folder of ``tritonfleet/`` is found as a package (no hand-kept
list), ``clients/`` (the project's layout) installs as ``tritonfleet.clients``, and every file in them that is
not Python (a benchmark's wrk script, say) ships as package data. The web console ships its bundle
(``tritonfleet/console/static/``, which ``scripts/setup.sh`` builds and git ignores), not its sources and npm
packages (``web/``)."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

FOLDERS = {"tritonfleet": Path("tritonfleet"), "tritonfleet.clients": Path("clients")}
SKIP = {".py", ".pyc"}
SOURCES_ONLY = (Path("tritonfleet/console/web"),)  # the console's sources and npm packages: not shipped


def data_files(folder: Path) -> list[str]:
    """The files under ``folder`` that are not Python, relative to it (its subpackages' included)."""
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix not in SKIP
        and "__pycache__" not in path.parts
        and not any(path.is_relative_to(top) for top in SOURCES_ONLY)
    )


setup(
    packages=[
        *find_namespace_packages(
            include=["tritonfleet", "tritonfleet.*"],
            exclude=["*.__pycache__", "tritonfleet.console.web*", "tritonfleet.console.static*"],
        ),
        "tritonfleet.clients",
    ],
    package_dir={"tritonfleet.clients": "clients"},
    package_data={name: data_files(folder) for name, folder in FOLDERS.items()},
)
