"""The batch store, the one truth of batch inference: files, batches, their lines and the lines' results.

One SQL schema on two databases: SQLite in WAL mode (the embedded default, ``$TRITONFLEET_HOME/batch.db``)
and PostgreSQL (``postgresql://...``, shared by the Celery workers of several machines). What makes a batch
lose nothing and answer nothing twice lives here:

- a line is claimed under a lease (:meth:`Store.claim`: SQLite ``BEGIN IMMEDIATE ... UPDATE ... RETURNING``,
  PostgreSQL ``FOR UPDATE SKIP LOCKED``); a lease that runs out goes back to the queue (:meth:`Store.sweep`);
- a result is written once: ``results`` is unique on (batch, line) and (batch, ``custom_id``), and the same
  transaction that inserts it (``ON CONFLICT DO NOTHING``) marks the line done (:meth:`Store.complete`), so a
  line run twice (a worker that died after its request, a lease that ran out) keeps its first answer;
- the output and error files are assembled from the results in line order at ``finalizing``
  (:meth:`Store.finalize`), in one transaction with the batch's final status.

Execution may repeat after a crash; the output never does. Times are Unix seconds from ``clock``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonfleet.frontdoor.keys import home

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")  # a batch "in flight"
TERMINAL = ("completed", "failed", "expired", "cancelled")
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
  id TEXT PRIMARY KEY, owner TEXT NOT NULL, purpose TEXT NOT NULL, filename TEXT NOT NULL,
  bytes {bigint} NOT NULL, created_at {bigint} NOT NULL, content {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
  id TEXT PRIMARY KEY, owner TEXT NOT NULL, endpoint TEXT NOT NULL, input_file_id TEXT NOT NULL,
  completion_window TEXT NOT NULL, status TEXT NOT NULL, created_at {bigint} NOT NULL,
  expires_at {real} NOT NULL, in_progress_at {bigint}, finalizing_at {bigint}, completed_at {bigint},
  failed_at {bigint}, expired_at {bigint}, cancelling_at {bigint}, cancelled_at {bigint},
  output_file_id TEXT, error_file_id TEXT, errors TEXT, metadata TEXT, total {bigint} NOT NULL DEFAULT 0,
  tokens {bigint} NOT NULL DEFAULT 0, ending TEXT, ordinal {real} NOT NULL);
CREATE INDEX IF NOT EXISTS batches_by_owner ON batches (owner, ordinal);
CREATE INDEX IF NOT EXISTS batches_by_status ON batches (status);
CREATE TABLE IF NOT EXISTS lines (
  batch_id TEXT NOT NULL, idx {bigint} NOT NULL, custom_id TEXT, url TEXT NOT NULL, body TEXT NOT NULL,
  state TEXT NOT NULL, lease_owner TEXT, lease_until {real}, attempts {bigint} NOT NULL DEFAULT 0,
  PRIMARY KEY (batch_id, idx));
CREATE INDEX IF NOT EXISTS lines_by_state ON lines (batch_id, state, idx);
CREATE TABLE IF NOT EXISTS results (
  batch_id TEXT NOT NULL, idx {bigint} NOT NULL, custom_id TEXT, ok {bigint} NOT NULL, line TEXT NOT NULL,
  tokens {bigint} NOT NULL DEFAULT 0, worker TEXT, PRIMARY KEY (batch_id, idx), UNIQUE (batch_id, custom_id));
"""
TYPES = {
    "sqlite": {"bigint": "INTEGER", "real": "REAL", "blob": "BLOB"},
    "postgres": {"bigint": "BIGINT", "real": "DOUBLE PRECISION", "blob": "BYTEA"},
}


def new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def default_url() -> str:
    return f"sqlite:///{home() / 'batch.db'}"


@dataclass(frozen=True)
class Line:
    """One request of a batch, as a worker gets it: where it goes and what it sends."""

    batch_id: str
    idx: int
    custom_id: str | None
    url: str
    body: str
    attempts: int = 0


@dataclass(frozen=True)
class Result:
    """What one line came to: its finished output line (JSON), whether it succeeded, its tokens."""

    batch_id: str
    idx: int
    custom_id: str | None
    ok: bool
    line: str
    tokens: int = 0
    worker: str = ""  # who wrote it (an audit: which worker answered)


class Store:
    """The store at ``url``: ``sqlite:///PATH`` or ``postgresql://...``. Thread-safe (a connection per
    thread); many processes may share one (SQLite on one machine, PostgreSQL on any)."""

    def __init__(self, url: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.url = url or default_url()
        self.clock = clock
        self.dialect = "postgres" if self.url.startswith(("postgres://", "postgresql://")) else "sqlite"
        if self.dialect == "sqlite":
            path = self.url.removeprefix("sqlite:///") if self.url.startswith("sqlite:") else self.url
            self.path: Path | None = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            self.path = None
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._create_schema()

    def _create_schema(self) -> None:
        """The tables, once. On PostgreSQL under an advisory lock, and not at all when they exist:
        ``CREATE INDEX IF NOT EXISTS`` locks its table even when the index exists, which deadlocks with
        the workers' transactions."""
        with self._tx() as tx:
            if self.dialect == "postgres":
                tx.execute("SELECT pg_advisory_xact_lock(1712)")  # one creator at a time
                if tx.execute("SELECT to_regclass('results')").fetchall()[0][0] is not None:
                    return
            for statement in SCHEMA.format(**TYPES[self.dialect]).split(";"):
                if statement.strip():
                    tx.execute(statement)

    # --- connections and transactions ------------------------------------------------------------------

    def _connect(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        if self.dialect == "sqlite":
            assert self.path is not None
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes (kill -9)
            conn.execute("PRAGMA busy_timeout=30000")
        else:
            import psycopg

            conn = psycopg.connect(self.url, autocommit=True)
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[_Tx]:
        """One write transaction: SQLite takes the write lock at once (``BEGIN IMMEDIATE``), so two
        claimers never both read the same pending lines."""
        conn = self._connect()
        if self.dialect == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Tx(conn, self.dialect)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        else:
            with conn.transaction():
                yield _Tx(conn, self.dialect)

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        return _Tx(self._connect(), self.dialect).execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(Exception):
                    conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- files -----------------------------------------------------------------------------------------

    def add_file(self, owner: str, purpose: str, filename: str, content: bytes) -> dict[str, Any]:
        file_id = new_id("file-")
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO files (id, owner, purpose, filename, bytes, created_at, content) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (file_id, owner, purpose, filename, len(content), int(self.clock()), content),
            )
        return self.file(file_id, owner) or {}

    def file(self, file_id: str, owner: str | None) -> dict[str, Any] | None:
        """The file's OpenAI object, or None when it does not exist or is not ``owner``'s."""
        rows = self._read(
            "SELECT id, owner, purpose, filename, bytes, created_at FROM files WHERE id = ?", (file_id,)
        )
        if not rows or (owner is not None and rows[0][1] != owner):
            return None
        fid, _, purpose, filename, size, created = rows[0]
        return {
            "id": fid,
            "object": "file",
            "bytes": size,
            "created_at": created,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }

    def files(self, owner: str | None, purpose: str | None = None) -> list[dict[str, Any]]:
        rows = self._read("SELECT id FROM files WHERE owner = ? ORDER BY created_at, id", (owner,))
        found = [self.file(r[0], owner) for r in rows]
        return [f for f in found if f and (purpose is None or f["purpose"] == purpose)]

    def content(self, file_id: str, owner: str | None) -> bytes | None:
        rows = self._read("SELECT owner, content FROM files WHERE id = ?", (file_id,))
        if not rows or (owner is not None and rows[0][0] != owner):
            return None
        return bytes(rows[0][1])

    def delete_file(self, file_id: str, owner: str | None) -> bool:
        if self.file(file_id, owner) is None:
            return False
        with self._tx() as tx:
            tx.execute("DELETE FROM files WHERE id = ?", (file_id,))
        return True

    # --- batches ---------------------------------------------------------------------------------------

    def add_batch(
        self, owner: str, endpoint: str, input_file_id: str, window: str, window_s: float, metadata: Any
    ) -> str:
        batch_id = new_id("batch_")
        now = self.clock()
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO batches (id, owner, endpoint, input_file_id, completion_window, status, "
                "created_at, expires_at, metadata, ordinal) VALUES (?, ?, ?, ?, ?, 'validating', ?, ?, ?, ?)",
                (batch_id, owner, endpoint, input_file_id, window, int(now), now + window_s,
                 json.dumps(metadata) if metadata is not None else None, now),
            )  # fmt: skip
        return batch_id

    def batch(self, batch_id: str, owner: str | None = None) -> dict[str, Any] | None:
        """The batch's OpenAI object (``request_counts`` from its results), or None when it does not exist
        or is not ``owner``'s."""
        rows = self._read(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,))
        if not rows or (owner is not None and rows[0][1] != owner):
            return None
        counts = self._read(
            "SELECT COUNT(*), COALESCE(SUM(ok), 0) FROM results WHERE batch_id = ?", (batch_id,)
        )[0]
        return _batch_object(rows[0], int(counts[1]), int(counts[0]) - int(counts[1]))

    def batches(self, owner: str | None, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """``owner``'s batches, newest first, after the batch ``after`` (cursor pagination); and whether
        there are more."""
        args: list[Any] = [owner]
        where = "owner = ?"
        if after:
            rows = self._read("SELECT ordinal, id FROM batches WHERE id = ? AND owner = ?", (after, owner))
            if rows:
                where += " AND (ordinal < ? OR (ordinal = ? AND id < ?))"
                args += [rows[0][0], rows[0][0], rows[0][1]]
        ids = self._read(
            f"SELECT id FROM batches WHERE {where} ORDER BY ordinal DESC, id DESC LIMIT ?",
            (*args, limit + 1),
        )
        found = [self.batch(r[0]) for r in ids[:limit]]
        return [b for b in found if b], len(ids) > limit

    def in_flight(self, owner: str) -> int:
        marks = ",".join("?" * len(ACTIVE))
        return self._read(
            f"SELECT COUNT(*) FROM batches WHERE owner = ? AND status IN ({marks})", (owner, *ACTIVE)
        )[0][0]

    def with_status(self, *statuses: str) -> list[str]:
        marks = ",".join("?" * len(statuses))
        rows = self._read(f"SELECT id FROM batches WHERE status IN ({marks}) ORDER BY ordinal", statuses)
        return [r[0] for r in rows]

    def raw_batch(self, batch_id: str) -> dict[str, Any]:
        rows = self._read(f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?", (batch_id,))
        return dict(zip(BATCH_COLUMNS.split(", "), rows[0], strict=True)) if rows else {}

    def start(self, batch_id: str, lines: list[Line], failed: list[Result]) -> bool:
        """``validating`` -> ``in_progress`` with the batch's lines and the results of the lines that failed
        validation, in one transaction; False when another process did it first."""
        now = int(self.clock())
        with self._tx() as tx:
            moved = tx.execute(
                "UPDATE batches SET status = 'in_progress', in_progress_at = ?, total = ? "
                "WHERE id = ? AND status = 'validating'",
                (now, len(lines) + len(failed), batch_id),
            ).rowcount
            if not moved:
                return False
            tx.executemany(
                "INSERT INTO lines (batch_id, idx, custom_id, url, body, state) VALUES (?, ?, ?, ?, ?, ?)",
                [(batch_id, x.idx, x.custom_id, x.url, x.body, "pending") for x in lines]
                + [(batch_id, r.idx, r.custom_id, "", "", "done") for r in failed],
            )
            self._insert_results(tx, failed)
        return True

    def fail(self, batch_id: str, errors: list[dict[str, Any]]) -> bool:
        """``validating`` -> ``failed`` with OpenAI's ``errors`` object."""
        with self._tx() as tx:
            return bool(
                tx.execute(
                    "UPDATE batches SET status = 'failed', failed_at = ?, errors = ? "
                    "WHERE id = ? AND status = 'validating'",
                    (int(self.clock()), json.dumps({"object": "list", "data": errors}), batch_id),
                ).rowcount
            )

    def cancel(self, batch_id: str) -> bool:
        """Ask a batch to stop: ``validating`` or ``in_progress`` -> ``cancelling`` (no line is claimed
        from then on)."""
        with self._tx() as tx:
            return bool(
                tx.execute(
                    "UPDATE batches SET status = 'cancelling', cancelling_at = ? "
                    "WHERE id = ? AND status IN ('validating', 'in_progress')",
                    (int(self.clock()), batch_id),
                ).rowcount
            )

    # --- lines: the queue ------------------------------------------------------------------------------

    def claim(self, worker: str, count: int, lease_s: float) -> list[Line]:
        """Up to ``count`` pending lines of the oldest batch in progress that has any, leased to ``worker``
        for ``lease_s`` seconds. Two claimers never get the same line."""
        now = self.clock()
        with self._tx() as tx:
            batch = tx.execute(
                "SELECT b.id FROM batches b WHERE b.status = 'in_progress' AND b.expires_at > ? AND EXISTS "
                "(SELECT 1 FROM lines l WHERE l.batch_id = b.id AND l.state = 'pending') "
                "ORDER BY b.ordinal, b.id LIMIT 1",
                (now,),
            ).fetchall()
            if not batch:
                return []
            pick = "SELECT idx FROM lines WHERE batch_id = ? AND state = 'pending' ORDER BY idx LIMIT ?"
            if self.dialect == "postgres":
                pick += " FOR UPDATE SKIP LOCKED"
            rows = tx.execute(
                "UPDATE lines SET state = 'leased', lease_owner = ?, lease_until = ?, "
                f"attempts = attempts + 1 WHERE batch_id = ? AND idx IN ({pick}) "
                "RETURNING batch_id, idx, custom_id, url, body, attempts",
                (worker, now + lease_s, batch[0][0], batch[0][0], count),
            ).fetchall()
        return sorted((Line(*r) for r in rows), key=lambda x: x.idx)

    def renew(self, worker: str, lines: list[Line], lease_s: float) -> None:
        """Extend ``worker``'s leases on ``lines`` (a chunk that is still running)."""
        with self._tx() as tx:
            tx.executemany(
                "UPDATE lines SET lease_until = ? WHERE batch_id = ? AND idx = ? AND lease_owner = ? "
                "AND state = 'leased'",
                [(self.clock() + lease_s, x.batch_id, x.idx, worker) for x in lines],
            )

    def complete(self, results: list[Result]) -> int:
        """Write each result once and mark its line done, in one transaction; the number newly written (a
        line already answered keeps its first answer)."""
        if not results:
            return 0
        with self._tx() as tx:
            written = self._insert_results(tx, results)
            tx.executemany(
                "UPDATE lines SET state = 'done', lease_owner = NULL WHERE batch_id = ? AND idx = ?",
                [(r.batch_id, r.idx) for r in results],
            )
        return written

    def _insert_results(self, tx: _Tx, results: list[Result]) -> int:
        written = 0
        tokens: dict[str, int] = {}
        for r in results:
            n = tx.execute(
                "INSERT INTO results (batch_id, idx, custom_id, ok, line, tokens, worker) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (r.batch_id, r.idx, r.custom_id, int(r.ok), r.line, r.tokens, r.worker),
            ).rowcount
            written += n
            if n:
                tokens[r.batch_id] = tokens.get(r.batch_id, 0) + r.tokens
        for batch_id, n in tokens.items():
            tx.execute("UPDATE batches SET tokens = tokens + ? WHERE id = ?", (n, batch_id))
        return written

    def release(self, worker: str, lines: list[Line]) -> None:
        """Give ``worker``'s unanswered leased lines back to the queue (a worker stopping)."""
        with self._tx() as tx:
            tx.executemany(
                "UPDATE lines SET state = 'pending', lease_owner = NULL WHERE batch_id = ? AND idx = ? "
                "AND state = 'leased' AND lease_owner = ?",
                [(x.batch_id, x.idx, worker) for x in lines],
            )

    def sweep(self) -> int:
        """Leases that ran out go back to the queue (their worker died or hangs); how many."""
        with self._tx() as tx:
            return tx.execute(
                "UPDATE lines SET state = 'pending', lease_owner = NULL "
                "WHERE state = 'leased' AND lease_until < ?",
                (self.clock(),),
            ).rowcount

    def release_dead(self, host: str, alive: Callable[[int], bool]) -> int:
        """Give back at once the leases of workers on ``host`` whose process is gone (``host:pid:...``
        names): a ``fleet serve`` restarted after a crash need not wait for its old leases to run out."""
        owners = self._read("SELECT DISTINCT lease_owner FROM lines WHERE state = 'leased'")
        dead = []
        for (owner,) in owners:
            parts = (owner or "").split(":")
            if len(parts) >= 2 and parts[0] == host and parts[1].isdigit() and not alive(int(parts[1])):
                dead.append(owner)
        released = 0
        for owner in dead:
            with self._tx() as tx:
                released += tx.execute(
                    "UPDATE lines SET state = 'pending', lease_owner = NULL "
                    "WHERE state = 'leased' AND lease_owner = ?",
                    (owner,),
                ).rowcount
        return released

    def line_states(self, batch_id: str) -> dict[str, int]:
        rows = self._read("SELECT state, COUNT(*) FROM lines WHERE batch_id = ? GROUP BY state", (batch_id,))
        return {state: int(n) for state, n in rows}

    def totals(self) -> dict[str, int]:
        """Lines of the batches in flight by state (pending, leased, done): the metrics' view."""
        marks = ",".join("?" * len(ACTIVE))
        rows = self._read(
            "SELECT l.state, COUNT(*) FROM lines l JOIN batches b ON b.id = l.batch_id "
            f"WHERE b.status IN ({marks}) GROUP BY l.state",
            ACTIVE,
        )
        return {state: int(n) for state, n in rows}

    # --- the end of a batch ----------------------------------------------------------------------------

    def to_finalizing(self, batch_id: str, ending: str) -> bool:
        """``in_progress`` -> ``finalizing``, to end as ``ending`` (completed or expired)."""
        with self._tx() as tx:
            return bool(
                tx.execute(
                    "UPDATE batches SET status = 'finalizing', finalizing_at = ?, ending = ? "
                    "WHERE id = ? AND status = 'in_progress'",
                    (int(self.clock()), ending, batch_id),
                ).rowcount
            )

    def finalize(self, batch_id: str, unanswered: Callable[[Line, str], str]) -> str | None:
        """``finalizing`` -> completed or expired, ``cancelling`` -> cancelled: lines never answered get
        ``unanswered(line, final)`` as their result, then the output file (successes) and the error file
        (the rest) are assembled from the results in line order, all in one transaction. The final status,
        or None when the batch was not there to finalize."""
        now = int(self.clock())
        with self._tx() as tx:
            row = tx.execute("SELECT owner, status, ending FROM batches WHERE id = ?", (batch_id,)).fetchall()
            if not row or row[0][1] not in ("finalizing", "cancelling"):
                return None
            owner = row[0][0]
            final = "cancelled" if row[0][1] == "cancelling" else row[0][2] or "completed"
            column = {"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}[
                final
            ]
            left = tx.execute(
                "SELECT batch_id, idx, custom_id, url, body, attempts FROM lines "
                "WHERE batch_id = ? AND state <> 'done' ORDER BY idx",
                (batch_id,),
            ).fetchall()
            self._insert_results(
                tx, [Result(batch_id, r[1], r[2], False, unanswered(Line(*r), final)) for r in left]
            )
            tx.execute("UPDATE lines SET state = 'done', lease_owner = NULL WHERE batch_id = ?", (batch_id,))
            files: dict[bool, str | None] = {}
            for ok in (True, False):
                rows = tx.execute(
                    "SELECT line FROM results WHERE batch_id = ? AND ok = ? ORDER BY idx", (batch_id, int(ok))
                ).fetchall()
                files[ok] = None
                if rows:
                    files[ok] = new_id("file-")
                    content = "".join(r[0] + "\n" for r in rows).encode()
                    tx.execute(
                        "INSERT INTO files (id, owner, purpose, filename, bytes, created_at, content) "
                        "VALUES (?, ?, 'batch_output', ?, ?, ?, ?)",
                        (files[ok], owner, f"{batch_id}_{'output' if ok else 'error'}.jsonl", len(content),
                         now, content),
                    )  # fmt: skip
            tx.execute(
                f"UPDATE batches SET status = ?, {column} = ?, output_file_id = ?, error_file_id = ? "
                "WHERE id = ?",
                (final, now, files[True], files[False], batch_id),
            )
        return final

    def results(self, batch_id: str) -> list[Result]:
        rows = self._read(
            "SELECT batch_id, idx, custom_id, ok, line, tokens, worker FROM results WHERE batch_id = ? "
            "ORDER BY idx",
            (batch_id,),
        )
        return [Result(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6] or "") for r in rows]


BATCH_COLUMNS = (
    "id, owner, endpoint, input_file_id, completion_window, status, created_at, expires_at, in_progress_at, "
    "finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at, output_file_id, "
    "error_file_id, errors, metadata, total, tokens"
)


def _batch_object(row: tuple, completed: int, failed: int) -> dict[str, Any]:
    b = dict(zip(BATCH_COLUMNS.split(", "), row, strict=True))
    return {
        "id": b["id"],
        "object": "batch",
        "endpoint": b["endpoint"],
        "errors": json.loads(b["errors"]) if b["errors"] else None,
        "input_file_id": b["input_file_id"],
        "completion_window": b["completion_window"],
        "status": b["status"],
        "output_file_id": b["output_file_id"],
        "error_file_id": b["error_file_id"],
        "created_at": b["created_at"],
        "in_progress_at": b["in_progress_at"],
        "expires_at": int(b["expires_at"]),
        "finalizing_at": b["finalizing_at"],
        "completed_at": b["completed_at"],
        "failed_at": b["failed_at"],
        "expired_at": b["expired_at"],
        "cancelling_at": b["cancelling_at"],
        "cancelled_at": b["cancelled_at"],
        "request_counts": {"total": b["total"], "completed": completed, "failed": failed},
        "metadata": json.loads(b["metadata"]) if b["metadata"] else None,
        "usage": {"total_tokens": b["tokens"]},
    }


class _Tx:
    """Runs SQL written with ``?`` placeholders on either database."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self.conn, self.dialect = conn, dialect

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql

    def execute(self, sql: str, args: tuple | list = ()) -> Any:
        return self.conn.execute(self._sql(sql), tuple(args))

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        if not rows:
            return
        if self.dialect == "postgres":
            with self.conn.cursor() as cur:
                cur.executemany(self._sql(sql), rows)
        else:
            self.conn.executemany(sql, rows)
