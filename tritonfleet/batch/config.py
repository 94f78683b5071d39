"""Settings of batch inference, one place: limits, the completion window, leases, worker concurrency.

Each has an environment variable (``TRITONFLEET_BATCH_<NAME>``, e.g. ``TRITONFLEET_BATCH_WINDOW_S``), read
by :meth:`BatchConfig.from_env`, so ``fleet serve`` and ``fleet worker`` agree without more flags. A key's
own batch limits (``fleet keys add --batch-lines ...``) override the defaults for that key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

WINDOWS = {"24h": 24 * 3600.0}  # OpenAI's completion_window values and their seconds


@dataclass(frozen=True)
class BatchConfig:
    store: str | None = None  # the store's URL (default: SQLite in $TRITONFLEET_HOME/batch.db)
    broker: str | None = None  # a Celery broker: workers are `fleet worker` processes, none in fleet serve
    window_s: float = 0.0  # the completion window's seconds; 0: what the window says (24h); tests: a few
    lease_s: float = 60.0  # a claimed line's lease; a chunk of lines takes well under it
    chunk: int = 32  # lines claimed at once (a Celery task's work: seconds, well under a minute)
    concurrency: int = 16  # lines in flight per worker (embeddings: 1.13x the direct client's 16; 0.85x at 8)
    max_file_mb: int = 64  # largest input file (the front door's body limit bounds it too)
    max_lines: int = 50_000  # lines a batch (OpenAI's limit)
    max_in_flight: int = 16  # batches in flight per key
    cancel_grace_s: float = 2.0  # a cancelled batch's running lines get this long to finish
    max_attempts: int = 5  # a line that failed this often (faults, not answers) is written as failed

    @classmethod
    def from_env(cls, **overrides: Any) -> BatchConfig:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"TRITONFLEET_BATCH_{f.name.upper()}")
            if raw:
                values[f.name] = raw if f.type == "str | None" else type(getattr(cls, f.name))(raw)
        return replace(cls(**values), **{k: v for k, v in overrides.items() if v is not None})

    def window(self, completion_window: str) -> float:
        return self.window_s or WINDOWS[completion_window]
