"""The paged KV cache's bookkeeping: which block of the engine's KV tensors holds what, and the prefix cache.

The engine allocates its KV memory once, ``num_blocks`` blocks of ``block_size`` token positions; a sequence
holds a list of blocks (its block table) that grows as it does. Nothing here touches the tensors: this is
the map the scheduler builds each step's block tables from.

Prefix caching (vLLM's scheme): a full block is named by the hash of its parent block's hash and its own
token ids, so a name stands for the whole prefix up to the block's end (a match also compares the
tokens, so a hash collision can never hand out the wrong block). Once the engine has written a full block,
its name is registered; a later sequence whose prompt starts with the same tokens takes the named
blocks instead of computing them again (:meth:`BlockPool.match`). Blocks are reference-counted: shared
blocks are only read (new tokens always go to a sequence's own blocks, so there is no copy-on-write). A block
nobody holds any more keeps its content and its name in an LRU of cached blocks, reused by the next match or
evicted, oldest first, when a fresh block is wanted and none is free.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass


def blocks_for(tokens: int, block_size: int) -> int:
    """Blocks that ``tokens`` positions take."""
    return -(-tokens // block_size)


@dataclass
class PrefixStats:
    """Prompt tokens looked up in the prefix cache at admission, and those found there."""

    lookup_tokens: int = 0
    hit_tokens: int = 0


class BlockPool:
    """The engine's KV blocks: free, held by sequences (reference-counted) or cached (nobody's, named)."""

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("a KV cache needs at least one block of at least one token")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.prefix_caching = prefix_caching
        self.stats = PrefixStats()
        self._refs = [0] * num_blocks
        self._name: list[int | None] = [None] * num_blocks
        self._tokens: list[tuple[int, ...] | None] = [None] * num_blocks
        self._by_name: dict[int, int] = {}
        self._free: deque[int] = deque(range(num_blocks))
        self._cached: OrderedDict[int, None] = OrderedDict()  # nobody's named blocks, oldest first

    @property
    def available(self) -> int:
        """Blocks a sequence could take now (free or cached)."""
        return len(self._free) + len(self._cached)

    @property
    def used(self) -> int:
        """Blocks held by sequences."""
        return self.num_blocks - self.available

    @property
    def cached(self) -> int:
        return len(self._cached)

    def names(self, tokens: Sequence[int], start: int = 0, parent: int | None = None) -> list[int]:
        """The names of the full blocks of ``tokens`` from block index ``start`` on, ``parent`` being the
        name of the block before (None at the start of a sequence)."""
        size, names = self.block_size, []
        for i in range(start, len(tokens) // size):
            parent = hash((parent, tuple(tokens[i * size : (i + 1) * size])))
            names.append(parent)
        return names

    def match(self, tokens: Sequence[int]) -> tuple[list[int], list[int]]:
        """The cached blocks a sequence whose context is ``tokens`` can start from, and their names: the
        longest run of named blocks from the start, never the block of the last token (which is fed, so
        that the step yields the next token's logits)."""
        if not self.prefix_caching:
            return [], []
        size = self.block_size
        usable = (len(tokens) - 1) // size
        blocks, names = [], []
        for i, name in enumerate(self.names(tokens[: usable * size])):
            block = self._by_name.get(name)
            if block is None or self._tokens[block] != tuple(tokens[i * size : (i + 1) * size]):
                break
            blocks.append(block)
            names.append(name)
        return blocks, names

    def fresh_available(self, hits: Sequence[int]) -> int:
        """Blocks left for fresh allocation once ``hits`` (from :meth:`match`) are taken."""
        return self.available - sum(1 for b in hits if self._refs[b] == 0)

    def take(self, hits: Sequence[int], fresh: int) -> list[int]:
        """Hold the matched blocks ``hits`` and ``fresh`` new ones; the caller checked they are available."""
        for block in hits:
            if self._refs[block] == 0:
                del self._cached[block]
            self._refs[block] += 1
        return [*hits, *(self._allocate() for _ in range(fresh))]

    def count_lookup(self, tokens: int, hit: int) -> None:
        self.stats.lookup_tokens += tokens
        self.stats.hit_tokens += hit

    def grow(self) -> int | None:
        """One fresh block for a growing sequence, or None when none is left."""
        return self._allocate() if self.available else None

    def register(self, block: int, name: int, tokens: Sequence[int]) -> None:
        """``block`` now holds the full block named ``name``, of ``tokens`` (the engine has written it). A
        name already held by another block (two sequences computed the same prefix at once) keeps its
        first block."""
        if self.prefix_caching and name not in self._by_name and self._name[block] is None:
            self._by_name[name] = block
            self._name[block] = name
            self._tokens[block] = tuple(tokens)

    def release(self, blocks: Sequence[int]) -> None:
        """A sequence lets go of its blocks. Its last blocks are the least likely to be shared again, so
        they go into the LRU first (evicted first)."""
        for block in reversed(blocks):
            self._refs[block] -= 1
            if self._refs[block] == 0:
                if self._name[block] is None:
                    self._free.append(block)
                else:
                    self._cached[block] = None

    def _allocate(self) -> int:
        if self._free:
            block = self._free.popleft()
        else:  # evict the oldest cached block: forget its name
            block, _ = self._cached.popitem(last=False)
            del self._by_name[self._name[block]]  # type: ignore[arg-type]
            self._name[block] = self._tokens[block] = None
        self._refs[block] = 1
        return block
