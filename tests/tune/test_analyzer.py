"""``fleet tune``'s Model Analyzer side without a server: the profile config it writes (checked by Model
Analyzer 1.58.0's own parser in its venv), the results it reads, and the choice.

The results are not from a Model Analyzer run: ``export_sample`` writes them in the layout Model Analyzer
1.58.0 documents and writes (``export/results/metrics-model-inference.csv`` with its default inference
columns, list cells quoted as its ``format_for_csv`` does, and ``variants/<variant>/config.pbtxt`` as remote
mode writes each variant it loads), from the model's real CPU config with the variant's settings. The run
itself is tests/tune/test_tune_server.py.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.cli import main
from tritonfleet.repository import parse_config
from tritonfleet.tune import analyzer, command, view

MODEL = "efficientnet_lite0"
# Model Analyzer's DEFAULT_INFERENCE_OUTPUT_FIELDS, by their headers (result_table_manager and the records).
COLUMNS = [
    "Model", "Batch", "Concurrency", "Model Config Path", "Instance Group", "Max Batch Size",
    "Satisfies Constraints", "Throughput (infer/sec)", "p99 Latency (ms)",
]  # fmt: skip


@pytest.fixture(scope="module")
def script() -> Path:
    """Model Analyzer's venv (created on first use, about a minute, then cached)."""
    return analyzer.venv()


def profile(tmp_path: Path, model: str = MODEL, **search: tuple[int, ...]) -> tuple[dict, mc.ModelConfig]:
    names = view.make(REPOSITORY, model, "cpu", tmp_path / "view")
    assert names[-1] == model
    served = parse_config(tmp_path / "view" / model / "config.pbtxt")
    config = analyzer.profile_config(
        model, served, view=tmp_path / "view", workdir=tmp_path, grpc_url="127.0.0.1:8001",
        http_url="127.0.0.1:8000", metrics_url="http://127.0.0.1:8002/metrics",
        search=analyzer.Search(**search), input_data=None, cpu_only=True,
    )  # fmt: skip
    return config, served


def test_model_analyzer_accepts_the_profile_config(tmp_path: Path, script: Path) -> None:
    config, _ = profile(tmp_path, instances=(1, 2, 3), queue_delays_us=(0, 500), concurrency=(1, 2))
    parsed = analyzer.check_config(script, analyzer.write_config(config, tmp_path))
    assert parsed["triton_launch_mode"] == "remote" and parsed["run_config_search_disable"] is True
    spec = parsed["profile_models"][MODEL]
    assert spec["cpu_only"] is True
    assert spec["model_config_parameters"] == {
        "instance_group": [[{"kind": ["KIND_CPU"], "count": [1, 2, 3]}]],
        "dynamic_batching": [{"max_queue_delay_microseconds": [0, 500]}],
    }
    assert spec["parameters"]["concurrency"] == [1, 2] and spec["parameters"]["batch_sizes"] == [1]
    assert spec["perf_analyzer_flags"]["measurement-interval"] == "3000"


def test_model_analyzer_refuses_a_misspelt_key(tmp_path: Path, script: Path) -> None:
    config, _ = profile(tmp_path)
    config["run_config_search_disabled"] = config.pop("run_config_search_disable")
    with pytest.raises(ValueError, match="Model Analyzer refuses"):
        analyzer.check_config(script, analyzer.write_config(config, tmp_path))


def test_a_model_without_a_batcher_searches_instances_only(tmp_path: Path) -> None:
    served = parse_config(REPOSITORY / MODEL / "configs" / "cpu.pbtxt")
    served.ClearField("dynamic_batching")
    config = analyzer.profile_config(
        MODEL, served, view=tmp_path, workdir=tmp_path, grpc_url="g", http_url="h", metrics_url="m",
        search=analyzer.Search(), input_data=tmp_path / "input.json", cpu_only=False,
    )  # fmt: skip
    spec = config["profile_models"][MODEL]
    assert spec["model_config_parameters"] == {"instance_group": [{"kind": "KIND_GPU", "count": [1, 2]}]}
    assert config["dcgm_disable"] is False
    assert config["perf_analyzer_flags"]["input-data"].endswith("input.json")


def test_the_view_holds_the_cpu_configs_of_the_model_and_its_steps(tmp_path: Path) -> None:
    names = view.make(REPOSITORY, "image_classifier", "cpu", tmp_path / "view")
    assert names == ["image_preprocess", MODEL, "image_classifier"]
    for name in names:
        assert (tmp_path / "view" / name / "config.pbtxt").read_text() == (
            view.target_config(REPOSITORY / name, "cpu").read_text()
        )
        assert (tmp_path / "view" / name / "1").resolve() == (REPOSITORY / name / "1").resolve()
    assert "KIND_CPU" in (tmp_path / "view" / MODEL / "config.pbtxt").read_text()


def export_sample(workdir: Path, rows: list[tuple[str, int, int, int, int | None, float, float]]) -> None:
    """Model Analyzer's export for ``rows`` of (variant, instances, queue delay µs or None, batch,
    concurrency, infer/s, p99 ms): the CSV and each variant's config (see the module's docstring)."""
    base = parse_config(REPOSITORY / MODEL / "configs" / "cpu.pbtxt")
    results = workdir / "export" / "results"
    results.mkdir(parents=True)
    with (results / analyzer.RESULTS_CSV).open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for variant, instances, delay, batch, concurrency, throughput, p99 in rows:
            config = mc.ModelConfig()
            config.CopyFrom(base)
            config.instance_group[0].count = instances
            if delay is None:
                config.ClearField("dynamic_batching")
            else:
                config.dynamic_batching.max_queue_delay_microseconds = delay
            (workdir / "variants" / variant).mkdir(parents=True, exist_ok=True)
            (workdir / "variants" / variant / "config.pbtxt").write_text(text_format.MessageToString(config))
            row = [MODEL, batch, concurrency, variant, f"{instances}:CPU", 32, "Yes", throughput, p99]
            out.writerow(row)


SAMPLE = [
    (f"{MODEL}_config_default", 1, 0, 1, 1, 121.4, 9.8),
    (f"{MODEL}_config_default", 1, 0, 1, 4, 150.2, 31.0),
    (f"{MODEL}_config_0", 2, 0, 1, 1, 118.0, 10.2),
    (f"{MODEL}_config_0", 2, 0, 1, 4, 171.9, 28.5),
    (f"{MODEL}_config_1", 2, 1000, 1, 4, 171.9, 30.1),
    (f"{MODEL}_config_2", 3, 1000, 1, 4, 176.0, 44.0),
]


def test_results_are_read_with_each_variants_settings(tmp_path: Path) -> None:
    export_sample(tmp_path, SAMPLE)
    found = analyzer.measurements(tmp_path)
    assert [(m.variant, m.instances, m.max_queue_delay_us, m.concurrency) for m in found] == [
        (v, i, d, c) for v, i, d, _, c, _, _ in SAMPLE
    ]
    assert [m.throughput for m in found] == [row[5] for row in SAMPLE]
    # The most throughput; within a p99 budget, the best of what fits; on a tie fewer instances, then the
    # shorter delay; a budget nothing meets falls back to the best overall.
    assert analyzer.choose(found).variant == f"{MODEL}_config_2"
    assert analyzer.choose(found, latency_budget_ms=40).variant == f"{MODEL}_config_0"
    assert analyzer.choose(found, latency_budget_ms=1).variant == f"{MODEL}_config_2"


def test_results_that_disagree_with_their_variant_are_refused(tmp_path: Path) -> None:
    export_sample(tmp_path, SAMPLE[:1])
    path = tmp_path / "export" / "results" / analyzer.RESULTS_CSV
    path.write_text(path.read_text().replace("1:CPU", "4:CPU"))
    with pytest.raises(RuntimeError, match="4 instance"):
        analyzer.measurements(tmp_path)
    shutil.rmtree(tmp_path / "export")
    with pytest.raises(RuntimeError, match="wrote no"):
        analyzer.measurements(tmp_path)


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("image_classifier", "is an ensemble: tune what it calls (image_preprocess, efficientnet_lite0)"),
        ("tensorrt_llm_bls", "is a BLS model"),
        ("tensorrt_llm", "is decoupled"),
    ],
)
def test_what_the_manual_search_cannot_tune_is_refused(model: str, says: str, capsys) -> None:
    config = parse_config(view.target_config(REPOSITORY / model, "cpu"))
    assert says in (command.refusal(config) or "")
    assert main(["--repository", str(REPOSITORY), "tune", model]) == 2
    assert says in " ".join(capsys.readouterr().out.split())  # rich wraps the line


def test_a_gpu_target_needs_its_plan_and_gpu_kind(capsys) -> None:
    assert command.refusal(parse_config(REPOSITORY / MODEL / "config.pbtxt")) is None
    assert main(["--repository", str(REPOSITORY), "tune", MODEL, "--target", "l4"]) == 2
    assert "needs --gpu" in capsys.readouterr().out
    args = ["--repository", str(REPOSITORY), "tune", MODEL, "--target", "nosuchplan", "--gpu", "L4"]
    assert main(args) == 2
    assert "run fleet plan first" in capsys.readouterr().out
    assert main([*args[:-1], "Z80"]) == 2
    assert "unknown GPU 'Z80'" in capsys.readouterr().out
