"""Greedy decoding of a sequence alone and beside others, compared as far as the engine's arithmetic allows.

A batch's shapes pick other kernels (and other int8 activation groups) than one row's, so a row's logits
round differently beside others: measured up to ~0.03 nats in a token's log-probability here (f32 compute,
int8 weights), more where the CPU computes in bf16. A greedy row may then part from its lone run where two
tokens are nearly as likely, as vLLM's and TensorRT-LLM's rows do. "The same up to rounding": equal tokens up
to the first that differs, and the chosen tokens' log-probabilities within ``TOLERANCE`` of each other at
every position up to and including it, where both chose a token of probability at most one half (up to the
same tolerance). The most likely token's log-probability moves with the logits by no more than twice their
rounding whichever token it is, and two tokens as likely as each other have at most one half each: where the
runs part, it is a near-tie, not a row computed from someone else's inputs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOLERANCE = 0.15  # nats


def assert_same_up_to_rounding(
    tokens: Sequence[int], logprobs: Sequence[float], alone: Sequence[int], alone_logprobs: Sequence[float]
) -> int | None:
    """Assert that greedy ``tokens`` (with their log-probabilities) are ``alone``'s up to rounding; the
    index where they part, None where they are equal."""
    tokens, alone = list(tokens), list(alone)
    common = min(len(tokens), len(alone))
    parted = next((i for i in range(common) if tokens[i] != alone[i]), None)
    if parted is None:
        assert tokens == alone, f"equal tokens, but {len(tokens)} against {len(alone)} alone"
    upto = common if parted is None else parted + 1
    gaps = np.abs(np.subtract(logprobs[:upto], alone_logprobs[:upto]))
    assert len(gaps) == upto and (gaps <= TOLERANCE).all(), (
        f"log-probabilities {np.round(logprobs[:upto], 3).tolist()} against "
        f"{np.round(alone_logprobs[:upto], 3).tolist()} alone (tokens part at {parted})"
    )
    if parted is not None:
        worst = max(logprobs[parted], alone_logprobs[parted])
        assert worst <= np.log(0.5) + TOLERANCE, f"they part at {parted}: p {np.exp(worst):.2f}"
    return parted


# A greedy answer whose every token is at least this likely alone cannot part at a near-tie: tests that
# compare rows with their lone runs exactly use such prompts and assert it.
CONFIDENT = 0.5 * float(np.exp(TOLERANCE))
# Questions of 16 tokens in SmolLM2's chat template whose greedy answers are confident (each token at least
# 0.69 likely, measured on the int8 engine; tests/llm/test_llm_batch.py asserts CONFIDENT).
CONFIDENT_QUESTIONS = (
    "What is the capital of Russia?",
    "What is the capital of Japan?",
    "What is the capital of Germany?",
)
