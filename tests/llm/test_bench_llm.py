"""`fleet bench llm` machinery, fast: the genai-perf command line, its export parsed, the in-process floor;
`--engines`: specs, the targets, a small run of the served engine in its worker.

genai-perf itself is not installed here (its own venv, created by the bench on demand); the export fixture is
trimmed from a real genai-perf 0.0.16 run against the ensemble.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.pipelines.llm.bench import engines, peer
from tritonfleet.pipelines.llm.bench import served as llm

FIXTURE = Path(__file__).parent / "data" / "genai_perf" / "profile_export_genai_perf.json"


def test_genai_perf_command_for_a_level() -> None:
    cmd = llm.genai_perf_command(
        Path("/venv/bin/genai-perf"),
        url="localhost:8001",
        concurrency=4,
        request_count=16,
        input_tokens=128,
        output_tokens=64,
        tokenizer=Path("/repo/preprocessing/1/tokenizer"),
        artifact_dir=Path("/out/c4"),
    )
    assert cmd == [
        "/venv/bin/genai-perf", "profile",
        "-m", "ensemble",
        "--endpoint-type", "kserve",
        "--backend", "tensorrtllm",
        "--streaming",
        "-u", "localhost:8001",
        "--concurrency", "4",
        "--request-count", "16",
        "--synthetic-input-tokens-mean", "128",
        "--synthetic-input-tokens-stddev", "0",
        "--output-tokens-mean", "64",
        "--output-tokens-stddev", "0",
        "--output-tokens-mean-deterministic",
        "--tokenizer", "/repo/preprocessing/1/tokenizer",
        "--random-seed", "0",
        "--artifact-dir", "/out/c4",
    ]  # fmt: skip


def test_genai_perf_environment_runs_our_perf_analyzer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm.perf_analyzer, "binary", lambda: "/fleet/.venv/bin/perf_analyzer")
    env = llm.genai_perf_environment(Path("/gp/bin/genai-perf"))
    assert env["PATH"].split(":")[:2] == ["/fleet/.venv/bin", "/gp/bin"]
    assert "cuda_runtime" in env["LD_LIBRARY_PATH"] and env["HF_HUB_OFFLINE"] == "1"


def test_parse_genai_perf_export() -> None:
    point = llm.parse_genai_perf_export(FIXTURE, 4)
    assert point.concurrency == 4
    assert point.request_count == 16
    # genai-perf re-tokenizes the streamed text: one of the 16 requests counted 63 of its 64 tokens
    assert point.output_tokens_avg == 63.9375
    assert (point.ttft_avg_ms, point.ttft_p50_ms, point.ttft_p99_ms) == pytest.approx(
        (572.98, 643.31, 776.08), abs=0.01
    )
    assert (point.itl_avg_ms, point.itl_p50_ms, point.itl_p99_ms) == pytest.approx(
        (29.99, 28.62, 37.33), abs=0.01
    )
    assert (point.output_tokens_per_s, point.requests_per_s) == pytest.approx((103.32, 1.616), abs=0.01)
    # output tokens/s = requests/s * tokens per request
    assert point.output_tokens_per_s == pytest.approx(point.requests_per_s * point.output_tokens_avg)


def test_targets_from_levels() -> None:
    levels = [
        {"concurrency": c, "served": {"output_tokens_per_s": s}, "floor": {"output_tokens_per_s": f}}
        for c, s, f in ((1, 60.0, 70.0), (8, 150.0, 160.0))
    ]
    checks = {c["check"]: c for c in llm.targets(levels, {"tokens_per_s": 50.0, "decode_tokens_per_s": 90.0})}
    assert checks["served tokens/s, concurrency 8 vs 1"]["ratio"] == 2.5
    assert checks["served single stream vs in-process"]["met"]
    # against llama.cpp's tokens/s with the prompt, as genai-perf counts the served ones
    assert not checks["served concurrency 1 vs llama.cpp batch 1"]["met"]  # 1.2 < 1.5
    assert checks["served concurrency 8 vs llama.cpp batch 1"]["met"]


def test_in_process_floor_at_concurrency_2() -> None:
    settings = llm.EngineSettings.read(REPOSITORY)
    if not (settings.engine_dir / "engine.json").is_file():
        pytest.skip("CPU engine not built (fleet build llm)")
    scheduler = llm.floor_scheduler(settings)
    try:
        prompt = llm.prompt_ids(settings.engine_dir / "tokenizer.json", 16)
        assert len(prompt) == 16
        point = llm.measure_floor(scheduler, prompt, output_tokens=3, concurrency=2, requests=4)
    finally:
        scheduler.stop()
    assert point.concurrency == 2 and point.request_count == 4
    assert point.output_tokens_avg == 3  # measure_floor also raises unless every request got exactly 3
    assert 0 < point.ttft_p50_ms <= point.ttft_p99_ms
    assert point.itl_avg_ms > 0 and point.output_tokens_per_s > 0 and point.requests_per_s > 0


# --- fleet bench llm --engines ---


def test_engine_specs_and_their_options() -> None:
    assert engines.split_specs("openvino,genai:max_batched_tokens=256,max_seqs=8,ortgenai") == [
        "openvino",
        "genai:max_batched_tokens=256,max_seqs=8",
        "ortgenai",
    ]
    with pytest.raises(SystemExit, match="unknown engine 'vllm'"):
        engines.split_specs("openvino,vllm")


def _level(c: int, **tps: float) -> dict:
    return {
        "concurrency": c,
        "engines": {s: {"tokens_per_s": v, "ttft_p50_ms": 100.0 * c} for s, v in tps.items()},
    }


def test_engine_targets_are_ratios_within_the_run() -> None:
    data = {
        "levels": [
            _level(1, openvino=50.0, genai=55.0, ortgenai=60.0),
            _level(8, openvino=180.0, genai=190.0, ortgenai=120.0),
            _level(32, openvino=240.0, genai=250.0, ortgenai=90.0),
        ],
        "prefix": {"engines": {"openvino": {"hit_over_miss": 0.1}}},
    }
    checks = {c["check"]: c for c in engines.targets(data, ["openvino", "genai", "ortgenai"])}
    assert checks["8 streams vs 1, tokens/s"]["value"] == 3.6 and checks["8 streams vs 1, tokens/s"]["met"]
    assert checks["32 streams vs 1, tokens/s"]["value"] == 4.8
    ttft = checks["TTFT p50 at 8 streams, s"]
    assert ttft["value"] == 0.8 and not ttft["met"]
    assert checks["8 streams vs genai, tokens/s (gate)"]["value"] == pytest.approx(0.947, abs=1e-3)
    assert checks["32 streams vs genai, tokens/s (gate)"]["met"]
    assert not checks["1 stream vs ortgenai, tokens/s"]["met"]  # 0.83 < 0.95
    assert checks["prefix hit / miss TTFT"]["met"]
    assert not any("llamaserver" in c for c in checks)  # not in this run: not checked


def test_engine_bench_runs_the_served_engine_in_a_worker(tmp_path: Path) -> None:
    settings = llm.EngineSettings.read(REPOSITORY)
    if not (settings.engine_dir / "engine.json").is_file():
        pytest.skip("CPU engine not built (fleet build llm)")
    work = engines.Workloads(levels=(1, 2), prompt_tokens=40, output_tokens=3, min_requests=2, mixed=3,
                             mixed_concurrency=2, prefix_tokens=64, prefix_trials=1)  # fmt: skip
    path = engines.run_engine_bench(REPOSITORY, ["openvino", "llamaserver"], tmp_path, Console(), work)
    data = json.loads(path.with_suffix(".json").read_text())
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 2]
    level = data["levels"][1]["engines"]["openvino"]
    assert level["requests"] == 4 and level["output_tokens"] == 12  # every request exactly 3 tokens
    assert data["mixed"]["engines"]["openvino"]["requests"] == 3
    assert data["prefix"]["engines"]["openvino"]["hit_p50_ms"] > 0
    stats = data["engines"]["openvino"]["stats"]
    assert stats["kv"]["prefix"]["hit_tokens"] >= 64  # the probe's shared prefix was found
    if peer.llama_server() is None:
        assert "llamaserver" in data["missing"] and "--build-peer" in data["missing"]["llamaserver"]
    assert "## Concurrent streams" in path.read_text()
