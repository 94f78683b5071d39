"""The KV cache's block bookkeeping and prefix cache, without an engine."""

from __future__ import annotations

import pytest

from tritonfleet.pipelines.llm.kv_blocks import BlockPool, blocks_for

B = 4  # tokens per block


def written(pool: BlockPool, tokens: list[int], blocks: list[int]) -> None:
    """Register the full blocks of ``tokens`` as the scheduler does once the engine has written them."""
    for i, name in enumerate(pool.names(tokens)):
        pool.register(blocks[i], name, tokens[i * B : (i + 1) * B])


def test_blocks_for() -> None:
    assert [blocks_for(n, B) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]


def test_take_grow_release_count_blocks() -> None:
    pool = BlockPool(6, B)
    first = pool.take([], 2)
    assert len(set(first)) == 2 and pool.used == 2 and pool.available == 4
    second = pool.take([], 3)
    assert not set(first) & set(second)
    assert pool.grow() is not None and pool.grow() is None  # all six held
    pool.release(first)
    assert pool.used == 4 and pool.available == 2 and pool.cached == 0  # unnamed blocks are simply free


def test_a_shared_prefix_is_matched_but_never_its_last_token() -> None:
    pool = BlockPool(8, B)
    prompt = list(range(10))  # blocks [0-3] [4-7] and two tokens
    blocks = pool.take([], blocks_for(len(prompt), B))
    written(pool, prompt, blocks)
    hits, names = pool.match([*prompt, 99])  # the same prompt and one more token
    assert hits == blocks[:2] and names == pool.names(prompt)
    assert pool.match(prompt[:8])[0] == blocks[:1]  # 8 tokens: block 2 holds the last one, so it is fed
    assert pool.match([0, 1, 2, 3, 9, 9, 9, 9, 9])[0] == blocks[:1]  # parts after the first block
    assert pool.match([7, 1, 2, 3, 4, 5, 6, 7, 8])[0] == []  # the name covers the whole prefix


def test_released_named_blocks_stay_cached_until_evicted_oldest_first() -> None:
    pool = BlockPool(4, B)
    a, b = list(range(9)), list(range(100, 109))
    blocks_a = pool.take([], 3)
    written(pool, a, blocks_a)
    pool.release(blocks_a)
    assert pool.cached == 2 and pool.available == 4 and pool.used == 0
    hits, _ = pool.match(a)
    assert hits == blocks_a[:2] and pool.fresh_available(hits) == 2
    held = pool.take(hits, 1)
    assert pool.used == 3 and pool.cached == 0
    pool.release(held)
    blocks_b = pool.take([], 4)  # needs every block: evicts both cached blocks of a
    assert sorted(blocks_b) == [0, 1, 2, 3]
    assert pool.match(a)[0] == []
    written(pool, b, blocks_b)
    assert pool.match(b)[0] == blocks_b[:2]


def test_shared_blocks_are_counted_once_and_freed_by_the_last_holder() -> None:
    pool = BlockPool(6, B)
    prompt = list(range(9))
    mine = pool.take([], 3)
    written(pool, prompt, mine)
    hits, _ = pool.match(prompt)
    theirs = pool.take(hits, 1)
    assert theirs[:2] == mine[:2] and pool.used == 4
    pool.release(mine)
    assert pool.used == 3 and pool.cached == 0  # the shared two are still held
    pool.release(theirs)
    assert pool.used == 0 and pool.cached == 2


def test_a_hash_collision_never_hands_out_the_wrong_block() -> None:
    pool = BlockPool(4, B)
    blocks = pool.take([], 2)
    name = pool.names([1, 2, 3, 4])[0]
    pool.register(blocks[0], name, [1, 2, 3, 4])
    other = [5, 6, 7, 8, 0]
    pool._by_name[pool.names(other)[0]] = blocks[0]  # as if [5, 6, 7, 8] hashed like [1, 2, 3, 4]
    assert pool.match(other)[0] == []


def test_without_prefix_caching_nothing_is_named() -> None:
    pool = BlockPool(4, B, prefix_caching=False)
    blocks = pool.take([], 2)
    written(pool, list(range(8)), blocks)
    pool.release(blocks)
    assert pool.cached == 0 and pool.match(list(range(9))) == ([], [])
    with pytest.raises(ValueError):
        BlockPool(0, B)
