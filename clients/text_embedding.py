"""Requests and responses of the ``text_embedding`` pipeline, the same for HTTP and gRPC."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tritonfleet.clients.call import Call
from tritonfleet.pipelines.text_embedding import interface

MODEL = interface.TEXT_EMBEDDING.name
INPUT = interface.TEXT.name
OUTPUTS = (interface.EMBEDDING.name, interface.NUM_TOKENS.name, interface.TRUNCATED.name)


@dataclass(frozen=True)
class Embeddings:
    """One unit-length vector per text (cosine similarity is the dot product), with each text's token
    count ([CLS] and [SEP] included) and whether it was cut at the model's limit. Indexes and iterates as
    the list of vectors."""

    vectors: np.ndarray  # float32 [n, dim]
    num_tokens: list[int]
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.vectors)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.vectors[i]

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.vectors)

    def similarity(self) -> np.ndarray:
        """Cosine similarity of every pair of texts, [n, n]."""
        return self.vectors @ self.vectors.T


def embed(texts: str | Sequence[str]) -> Call:
    """Embed ``texts`` (one string or several, up to the model's max_batch_size) in one request."""
    items = [texts] if isinstance(texts, str) else list(texts)
    if not items:
        raise ValueError("embed needs at least one text")
    if not all(isinstance(t, str) for t in items):
        raise TypeError("embed takes strings")
    data = np.array([[t.encode()] for t in items], dtype=np.object_)
    return Call(MODEL, {INPUT: data}, parse_response, outputs=dict.fromkeys(OUTPUTS, 0))


def parse_response(result: Any) -> Embeddings:
    vectors, counts, truncated = (result.as_numpy(name) for name in OUTPUTS)
    return Embeddings(
        vectors=vectors.astype(np.float32, copy=False),
        num_tokens=[int(n) for n in counts.reshape(-1)],
        truncated=[bool(t) for t in truncated.reshape(-1)],
    )


HELPERS = (embed,)  # FleetClient.<name>(...), AsyncFleetClient.<name>(...)
