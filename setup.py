"""Packaging beside pyproject.toml: every folder of ``tritonfleet/`` is found as a package (no hand-kept
list), ``clients/`` (the project's layout) installs as ``tritonfleet.clients``, and every file in them that is
not Python (a benchmark's wrk script, say) ships as package data."""

from pathlib import Path

from setuptools import find_namespace_packages, setup

FOLDERS = {"tritonfleet": Path("tritonfleet"), "tritonfleet.clients": Path("clients")}
SKIP = {".py", ".pyc"}


def data_files(folder: Path) -> list[str]:
    """The files under ``folder`` that are not Python, relative to it (its subpackages' included)."""
    return sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path.suffix not in SKIP and "__pycache__" not in path.parts
    )


setup(
    packages=[
        *find_namespace_packages(include=["tritonfleet", "tritonfleet.*"], exclude=["*.__pycache__"]),
        "tritonfleet.clients",
    ],
    package_dir={"tritonfleet.clients": "clients"},
    package_data={name: data_files(folder) for name, folder in FOLDERS.items()},
)
