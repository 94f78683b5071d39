"""``python -m tritonfleet.pipelines requirements [serve] [build]``: the pipelines' pip requirements, one a
line (scripts/setup.sh and docker/Dockerfile install them)."""

from __future__ import annotations

import argparse

from tritonfleet import pipelines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tritonfleet.pipelines")
    sub = parser.add_subparsers(required=True)
    req = sub.add_parser("requirements", help="pip requirements of the declared pipelines")
    req.add_argument("kinds", nargs="*", metavar="serve|build", help="default: both")
    args = parser.parse_args()
    if not set(args.kinds) <= {"serve", "build"}:
        parser.error(f"kinds are serve and build, not {args.kinds}")
    print("\n".join(pipelines.requirements(tuple(args.kinds or ("serve", "build")))))


if __name__ == "__main__":
    main()
