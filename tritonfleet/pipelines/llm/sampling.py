"""Per-request token selection over one row of logits, with TensorRT-LLM's sampling semantics.

Defaults follow TensorRT-LLM: ``top_k == 0`` and ``top_p == 0`` is greedy; ``top_k > 1`` samples from the k
most likely tokens (then nucleus ``top_p`` if > 0); ``top_k == 0, top_p > 0`` is nucleus sampling; seed 0.
Each request owns its random generator, so a seed reproduces a request whatever else shares its batch.
A request with a guide (:mod:`tritonfleet.pipelines.llm.guided`) samples only among the tokens its grammar
allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tritonfleet.pipelines.llm.guided import Guide


@dataclass
class SamplingParams:
    """What a request asks for; validated by the model before it reaches the scheduler."""

    max_tokens: int
    end_ids: tuple[int, ...] = ()
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_tokens: int = 0
    seed: int = 0
    stop_words: list[list[int]] = field(default_factory=list)
    bad_words: list[list[int]] = field(default_factory=list)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0 or (self.top_k <= 1 and self.top_p <= 0)


class Sampler:
    """Chooses the next token of one sequence."""

    def __init__(self, params: SamplingParams, prompt: Sequence[int], guide: Guide | None = None) -> None:
        self.p = params
        self.guide = guide
        self.rng = np.random.default_rng(params.seed)
        self._seen = np.unique(np.asarray(prompt, dtype=np.int64))
        self._counts: dict[int, int] = {}

    def choose(self, logits: np.ndarray, generated: Sequence[int]) -> tuple[int, float]:
        """The next token and its log-probability under the adjusted distribution."""
        p = self.p
        x = logits.astype(np.float32, copy=True)
        if p.repetition_penalty != 1.0:
            seen = np.union1d(self._seen, np.fromiter(self._counts, dtype=np.int64))
            v = x[seen]
            x[seen] = np.where(v > 0, v / p.repetition_penalty, v * p.repetition_penalty)
        if self._counts and (p.presence_penalty or p.frequency_penalty):
            ids = np.fromiter(self._counts, dtype=np.int64)
            counts = np.fromiter(self._counts.values(), dtype=np.float32)
            x[ids] -= p.presence_penalty + p.frequency_penalty * counts
        if len(generated) < p.min_tokens and p.end_ids:
            x[list(p.end_ids)] = -np.inf
        for word in p.bad_words:
            if len(word) == 1 or list(generated[len(generated) - len(word) + 1 :]) == word[:-1]:
                x[word[-1]] = -np.inf
        if self.guide is not None:
            allowed = self.guide.allowed(x.size)
            x[~allowed] = -np.inf
            if not np.isfinite(x).any():  # nothing the grammar allows is left (min_tokens): end here
                x[allowed] = 0.0
        if p.greedy:
            token = int(np.argmax(x))
        else:
            x /= p.temperature
            token = self._sample(x)
        logprob = float(x[token] - _logsumexp(x))
        self._counts[token] = self._counts.get(token, 0) + 1
        if self.guide is not None:
            self.guide.advance(token)
        return token, logprob

    def _sample(self, x: np.ndarray) -> int:
        k = self.p.top_k if self.p.top_k > 1 else x.size
        idx = np.argpartition(x, -k)[-k:] if k < x.size else np.arange(x.size)
        idx = idx[np.argsort(x[idx])[::-1]]
        probs = np.exp(x[idx] - x[idx[0]])
        probs /= probs.sum()
        if 0 < self.p.top_p < 1:
            keep = int(np.searchsorted(np.cumsum(probs), self.p.top_p)) + 1
            idx, probs = idx[:keep], probs[:keep] / probs[:keep].sum()
        return int(idx[self.rng.choice(idx.size, p=probs)])

    def stopped(self, generated: Sequence[int]) -> bool:
        """Whether the sequence now ends with an end id or one of the stop words."""
        if generated and generated[-1] in self.p.end_ids:
            return True
        return any(len(w) <= len(generated) and list(generated[-len(w) :]) == w for w in self.p.stop_words)


def _logsumexp(x: np.ndarray) -> float:
    m = float(np.max(x))
    return m + float(np.log(np.sum(np.exp(x - m))))
