"""Packaging beside pyproject.toml: every folder of ``tritonfleet/`` is found as a package (no hand-kept
list), and ``clients/`` (the project's layout) installs as ``tritonfleet.clients``."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["tritonfleet", "tritonfleet.*"], exclude=["*.__pycache__"]),
        "tritonfleet.clients",
    ],
    package_dir={"tritonfleet.clients": "clients"},
    # *.cpp: the front door's C++ gRPC transport, built where the package is installed
    package_data={"tritonfleet": ["**/*.lua", "**/*.cpp"]},
)
