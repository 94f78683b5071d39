"""Packaging beside pyproject.toml: every folder of ``tritonfleet/`` is found as a package (no hand-kept
list), and ``clients/`` (the project's layout) installs as ``tritonfleet.clients``. The web console ships its
bundle (``tritonfleet/console/static/``, which ``scripts/setup.sh`` builds and git ignores), not its sources
and npm packages (``web/``)."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(
            include=["tritonfleet", "tritonfleet.*"],
            exclude=["*.__pycache__", "tritonfleet.console.web*", "tritonfleet.console.static*"],
        ),
        "tritonfleet.clients",
    ],
    package_dir={"tritonfleet.clients": "clients"},
    package_data={"tritonfleet": ["**/*.lua"], "tritonfleet.console": ["static/*"]},
)
