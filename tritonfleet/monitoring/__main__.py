"""``python -m tritonfleet.monitoring [ROOT]``: rewrite docker/monitoring/ from the registry."""

from __future__ import annotations

import sys
from pathlib import Path

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.monitoring import generated


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPOSITORY.parent
    for path, text in generated(REPOSITORY).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
        print(root / path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
