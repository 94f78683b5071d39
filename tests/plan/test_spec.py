"""Inventory specs and the GPU table."""

from __future__ import annotations

import pytest

from tritonfleet.plan import gpus, spec

GIB = 1 << 30


def test_named_mixed_and_raw_specs() -> None:
    assert [g.name for g in spec.parse("2xA100-40GB")] == ["A100-40GB", "A100-40GB"]
    assert [g.name for g in spec.parse("1xL4, 1xa100-40gb")] == ["L4", "A100-40GB"]
    assert spec.parse("L4")[0].memory_bytes == 24 * GIB
    raw = spec.parse("2x24GiB")
    assert [g.memory_bytes for g in raw] == [24 * GIB] * 2 and not raw[0].known
    assert spec.parse("1x80GB")[0].memory_bytes == 80 * 10**9
    assert spec.parse("1xH100")[0].name == "H100-80GB"  # alias


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("1xL4,", "empty"),
        ("0xL4", "count must be"),
        ("1xA100", "unknown GPU 'A100'"),
        ("1xRTX9000", "known: T4"),
        ("65xL4", "count must be"),
        ("1x100MiB", "at least 256 MiB"),
    ],
)
def test_bad_specs_say_why(text: str, says: str) -> None:
    with pytest.raises(spec.SpecError, match=says):
        spec.parse(text)


def test_canonical_and_default_names() -> None:
    inventory = spec.parse("1xL4,1xL4,1xA100-40GB,2x24GiB")
    assert spec.canonical(inventory) == "2xL4,1xA100-40GB,2x24GiB"
    assert spec.default_name(spec.parse("2xA100-40GB")) == "2xa100-40gb"
    assert spec.default_name(spec.parse("1xL4,1xA100-40GB")) == "1xl4-1xa100-40gb"


def test_table_facts() -> None:
    """Precisions follow the compute capability: bf16 from Ampere (8.0), fp8 from Ada (8.9)."""
    assert gpus.lookup("T4").compute_capability == (7, 5) and not gpus.lookup("T4").bf16
    assert gpus.lookup("A100-80GB").bf16 and not gpus.lookup("A100-80GB").fp8
    assert gpus.lookup("L4").fp8 and gpus.lookup("H100-80GB").fp8
    assert gpus.lookup("H200").memory_bytes == 141 * GIB
    for gpu in gpus.TABLE.values():
        assert gpu.source.startswith("https://") and gpu.usable_bytes < gpu.memory_bytes
        assert gpu.usable_bytes >= 0.9 * gpu.memory_bytes
