"""The store's guarantees on SQLite (no server; PostgreSQL: test_celery.py): claims never overlap, a result
is written once, leases run out and come back, the output is assembled in line order."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tritonfleet.batch.lines import output_line
from tritonfleet.batch.store import Line, Result, Store


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def batch_of(store: Store, n: int) -> str:
    file_id = store.add_file("k", "batch", "in.jsonl", b"{}")["id"]
    batch_id = store.add_batch("k", "/v1/embeddings", file_id, "24h", 3600, None)
    lines = [Line(batch_id, i, f"c{i}", "/v1/embeddings", "{}") for i in range(n)]
    assert store.start(batch_id, lines, [])
    assert not store.start(batch_id, lines, [])  # a second validator finds it started
    return batch_id


def answer(line: Line, text: str = "ok") -> Result:
    return Result(
        line.batch_id, line.idx, line.custom_id, True, output_line(line.custom_id, 200, {"t": text})
    )


def test_concurrent_claimers_never_share_a_line(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    batch_id = batch_of(store, 400)
    got: dict[str, list[int]] = {}

    def claimer(name: str) -> None:
        mine = got.setdefault(name, [])
        while lines := store.claim(name, 7, 60):
            mine += [x.idx for x in lines]
            time.sleep(0.002)  # a worker's requests: the others claim meanwhile
            store.complete([answer(x, name) for x in lines])

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = sorted(i for ids in got.values() for i in ids)
    assert every == list(range(400))  # each line claimed exactly once
    assert sum(len(ids) > 0 for ids in got.values()) >= 2
    assert store.line_states(batch_id) == {"done": 400}


def test_a_line_run_twice_keeps_its_first_answer(tmp_path: Path) -> None:
    clock = Clock()
    store = Store(f"sqlite:///{tmp_path / 'b.db'}", clock=clock)
    batch_id = batch_of(store, 3)
    first = store.claim("dead", 3, lease_s=10)
    assert store.claim("other", 3, 10) == []  # leased
    clock.now += 11
    assert store.sweep() == 3  # the lease ran out: back to the queue
    again = store.claim("alive", 3, 10)
    assert [x.idx for x in again] == [0, 1, 2] and all(x.attempts == 2 for x in again)
    assert store.complete([answer(x, "alive") for x in again]) == 3
    assert store.complete([answer(x, "dead") for x in first]) == 0  # the dead worker's late answers
    assert store.to_finalizing(batch_id, "completed")
    assert store.finalize(batch_id, lambda line, final: "") == "completed"
    batch = store.batch(batch_id, "k")
    assert batch["status"] == "completed" and batch["request_counts"] == {
        "total": 3,
        "completed": 3,
        "failed": 0,
    }
    out = store.content(batch["output_file_id"], "k").decode().splitlines()
    assert [json.loads(x)["custom_id"] for x in out] == ["c0", "c1", "c2"]
    assert {json.loads(x)["response"]["body"]["t"] for x in out} == {"alive"}
    assert store.batch(batch_id, "someone else") is None


def test_cancel_answers_what_never_ran(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    batch_id = batch_of(store, 5)
    ran = store.claim("w", 2, 60)
    store.complete([answer(x) for x in ran])
    assert store.cancel(batch_id) and store.claim("w", 5, 60) == []  # nothing claimed once cancelling
    assert (
        store.finalize(batch_id, lambda line, final: output_line(line.custom_id, None, None, {"code": final}))
        == "cancelled"
    )
    batch = store.batch(batch_id)
    assert batch["request_counts"] == {"total": 5, "completed": 2, "failed": 3}
    errors = [json.loads(x) for x in store.content(batch["error_file_id"], None).decode().splitlines()]
    assert [e["custom_id"] for e in errors] == ["c2", "c3", "c4"] and errors[0]["error"][
        "code"
    ] == "cancelled"


def test_leases_of_dead_local_workers_come_back_at_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    batch_of(store, 4)
    store.claim("host-a:111:x", 2, lease_s=600)
    store.claim("host-a:222:y", 1, lease_s=600)
    store.claim("host-b:111:z", 1, lease_s=600)
    assert store.release_dead("host-a", alive=lambda pid: pid == 222) == 2  # only host-a's dead pid 111
    assert [x.idx for x in store.claim("w", 4, 60)] == [0, 1]
