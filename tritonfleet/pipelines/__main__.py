"""``python -m tritonfleet.pipelines requirements [runtime] [serve] [build] [build-no-deps] [--missing]``: pip
requirements with their versions, one a line (scripts/setup.sh and docker/Dockerfile install them).

``runtime`` is the package's own dependencies (pyproject.toml's, no extra); ``serve`` and ``build`` what the
pipelines' models and recipes need; ``build-no-deps`` is for ``pip install --no-deps``. ``--missing`` keeps
those whose distribution is not installed here (an image whose base brings its own versions)."""

from __future__ import annotations

import argparse
import importlib.metadata

from tritonfleet import pipelines

KINDS = ("runtime", *pipelines.KINDS)


def installed(requirement: str) -> bool:
    try:
        importlib.metadata.version(pipelines.split_requirement(requirement)[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tritonfleet.pipelines")
    sub = parser.add_subparsers(required=True)
    req = sub.add_parser("requirements", help="pip requirements of the package and its pipelines")
    req.add_argument("kinds", nargs="*", metavar="|".join(KINDS), help="default: serve build")
    req.add_argument("--missing", action="store_true", help="only those not installed here")
    args = parser.parse_args()
    if not set(args.kinds) <= set(KINDS):
        parser.error(f"kinds are {', '.join(KINDS)}, not {args.kinds}")
    kinds = args.kinds or ["serve", "build"]
    found = pipelines.runtime_requirements() if "runtime" in kinds else []
    found += [r for r in pipelines.requirements(tuple(k for k in kinds if k != "runtime")) if r not in found]
    print("\n".join(r for r in found if not (args.missing and installed(r))))


if __name__ == "__main__":
    main()
