"""The two targets' LLM chains: one pipeline, the same steps; the CPU adds the stop id (and rag's pass-through
tensor, which on GPU needs a step of its own)."""

from __future__ import annotations

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.repository import Repository

GUIDED = ("guided_decoding_guide_type", "guided_decoding_guide")  # TensorRT-LLM 1.2.1's, both targets
COUNTS = ("return_num_input_tokens", "return_num_output_tokens")


def test_cpu_ensemble_is_the_gpu_ensemble_plus_the_stop_id() -> None:
    """Both call tensorrt_llm directly (TensorRT-LLM 1.2.1's backend returns the token counts and takes the
    guide); the CPU ensemble passes each sequence's stop_request_id to postprocessing (cancellation)."""
    repo = Repository(REPOSITORY)
    gpu, cpu = repo.config("ensemble", "gpu"), repo.config("ensemble", "cpu")
    steps = gpu.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["preprocessing", "tensorrt_llm", "postprocessing"]
    assert {*GUIDED, *COUNTS} <= set(steps[1].input_map) and {*GUIDED, *COUNTS} <= {t.name for t in gpu.input}
    assert steps[1].input_map["seed"] == "_OUT_SEED" and steps[1].input_map["min_tokens"] == "_OUT_MIN_TOKENS"
    steps[1].output_map["stop_request_id"] = "_STOP_REQUEST_ID"
    steps[2].input_map["STOP_REQUEST_ID"] = "_STOP_REQUEST_ID"
    assert cpu == gpu


def test_gpu_rag_steps_through_the_passthrough_model_and_the_cpu_rag_through_tensorrt_llm() -> None:
    repo = Repository(REPOSITORY)
    gpu, cpu = repo.config("rag", "gpu"), repo.config("rag", "cpu")
    assert [s.model_name for s in gpu.ensemble_scheduling.step][3:] == [
        "preprocessing", "tensorrt_llm_passthrough", "postprocessing"
    ]  # fmt: skip
    assert [s.model_name for s in cpu.ensemble_scheduling.step][3:] == [
        "preprocessing", "tensorrt_llm", "postprocessing"
    ]  # fmt: skip
    step = gpu.ensemble_scheduling.step[4]
    assert step.input_map["passthrough_in"] == "_SOURCES" and step.output_map["passthrough_out"] == "sources"
    assert set(GUIDED) <= {t.name for t in gpu.input}  # rag speaks the ensemble's interface


def test_cpu_postprocessing_is_the_gpu_one_without_dynamic_batching_and_with_the_stop_id() -> None:
    """A dynamic batcher would drop the cancelled steps that postprocessing turns into stop requests (and
    without one, one instance is enough); the stop id is the CPU ensemble's (and a STRING input, which a
    dynamic batcher must not take: see config.pbtxt)."""
    repo = Repository(REPOSITORY)
    gpu, cpu = repo.config("postprocessing", "gpu"), repo.config("postprocessing", "cpu")
    assert gpu.HasField("dynamic_batching") and not cpu.HasField("dynamic_batching")
    assert cpu.instance_group[0].count == 1 < gpu.instance_group[0].count
    gpu.instance_group[0].count = 1
    assert {t.name for t in cpu.input} - {t.name for t in gpu.input} == {"STOP_REQUEST_ID"}
    assert cpu.parameters["extra_tensors"].string_value == "STOP_REQUEST_ID"
    gpu.ClearField("dynamic_batching")
    gpu.input.add().CopyFrom(next(t for t in cpu.input if t.name == "STOP_REQUEST_ID"))
    gpu.parameters["extra_tensors"].string_value = "STOP_REQUEST_ID"
    assert cpu == gpu


def test_cpu_tensorrt_llm_adds_only_the_stop_id_and_the_passthrough() -> None:
    repo = Repository(REPOSITORY)
    gpu, cpu = repo.config("tensorrt_llm", "gpu"), repo.config("tensorrt_llm", "cpu")
    step = repo.config("tensorrt_llm_passthrough", "gpu")
    extra_inputs = {t.name for t in cpu.input} - {t.name for t in gpu.input}
    extra_outputs = {t.name for t in cpu.output} - {t.name for t in gpu.output}
    assert extra_inputs == {"passthrough_in"}
    assert extra_outputs == {"stop_request_id", "passthrough_out"}
    # ...the pass-through with the types tensorrt_llm_passthrough gives it on GPU.
    for tensors, theirs in ((cpu.input, step.input), (cpu.output, step.output)):
        mine = {t.name: (t.data_type, list(t.dims)) for t in tensors if t.name.startswith("passthrough")}
        assert mine == {t.name: (t.data_type, list(t.dims)) for t in theirs if t.name in mine}


def test_cpu_bls_is_the_gpu_bls_with_fewer_instances() -> None:
    """...each a Python process."""
    repo = Repository(REPOSITORY)
    gpu, cpu = repo.config("tensorrt_llm_bls", "gpu"), repo.config("tensorrt_llm_bls", "cpu")
    for config in (gpu, cpu):
        assert config.parameters["llm_model"].string_value == "tensorrt_llm"
    assert cpu.instance_group[0].count == llm.CPU_BLS_INSTANCES < gpu.instance_group[0].count
    gpu.instance_group[0].count = cpu.instance_group[0].count
    assert cpu == gpu
