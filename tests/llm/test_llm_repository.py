"""The two targets' LLM ensembles: one pipeline, one step apart."""

from __future__ import annotations

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.repository import Repository

GUIDED = ("guided_decoding_guide_type", "guided_decoding_guide")  # tensorrtllm_backend v0.19's, CPU only


def _add_guided_inputs(gpu, cpu) -> None:
    """The CPU configs' guided decoding inputs (and their extra_tensors entry), copied onto the GPU config."""
    for name in GUIDED:
        gpu.input.append(next(t for t in cpu.input if t.name == name))
    if gpu.platform == "ensemble":
        for name in GUIDED:
            gpu.ensemble_scheduling.step[1].input_map[name] = name
    gpu.parameters["extra_tensors"].string_value = cpu.parameters["extra_tensors"].string_value


def test_cpu_ensemble_is_the_gpu_ensemble_with_tensorrt_llm_as_its_decoupled_step() -> None:
    """On GPU, tensorrt_llm_counts adds the token counts that tensorrtllm_backend v0.14.0 lacks; the CPU
    tensorrt_llm returns them itself, so the CPU ensemble calls it directly, and passes each sequence's
    stop_request_id to postprocessing (cancellation); otherwise the same."""
    repo = Repository(REPOSITORY)
    gpu, cpu = repo.config("ensemble", "gpu"), repo.config("ensemble", "cpu")
    steps = gpu.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["preprocessing", "tensorrt_llm_counts", "postprocessing"]
    steps[1].model_name = "tensorrt_llm"
    steps[1].output_map["stop_request_id"] = "_STOP_REQUEST_ID"
    steps[2].input_map["STOP_REQUEST_ID"] = "_STOP_REQUEST_ID"
    _add_guided_inputs(gpu, cpu)
    assert cpu == gpu


def test_cpu_postprocessing_is_the_gpu_one_without_dynamic_batching_and_with_the_stop_id() -> None:
    """A dynamic batcher would drop the cancelled steps that postprocessing turns into stop requests; the stop
    id is the CPU ensemble's (and a STRING input, which a dynamic batcher must not take: see config.pbtxt)."""
    repo = Repository(REPOSITORY)
    gpu, cpu = repo.config("postprocessing", "gpu"), repo.config("postprocessing", "cpu")
    assert gpu.HasField("dynamic_batching") and not cpu.HasField("dynamic_batching")
    assert {t.name for t in cpu.input} - {t.name for t in gpu.input} == {"STOP_REQUEST_ID"}
    assert cpu.parameters["extra_tensors"].string_value == "STOP_REQUEST_ID"
    gpu.ClearField("dynamic_batching")
    gpu.input.add().CopyFrom(next(t for t in cpu.input if t.name == "STOP_REQUEST_ID"))
    gpu.parameters["extra_tensors"].string_value = "STOP_REQUEST_ID"
    assert cpu == gpu


def test_cpu_tensorrt_llm_adds_only_the_count_stop_and_guided_decoding_tensors() -> None:
    repo = Repository(REPOSITORY)
    gpu, cpu = repo.config("tensorrt_llm", "gpu"), repo.config("tensorrt_llm", "cpu")
    counts = repo.config("tensorrt_llm_counts", "gpu")
    extra_inputs = {t.name for t in cpu.input} - {t.name for t in gpu.input}
    extra_outputs = {t.name for t in cpu.output} - {t.name for t in gpu.output}
    assert extra_inputs == {"return_num_input_tokens", "return_num_output_tokens", "passthrough_in", *GUIDED}
    assert extra_outputs == {"num_input_tokens", "num_output_tokens", "stop_request_id", "passthrough_out"}
    # ...the counts and the pass-through with the types tensorrt_llm_counts gives them on GPU.
    for tensors, counted in ((cpu.input, counts.input), (cpu.output, counts.output)):
        mine = {
            t.name: (t.data_type, list(t.dims))
            for t in tensors
            if t.name in (extra_inputs | extra_outputs) - {"stop_request_id", *GUIDED}
        }
        theirs = {t.name: (t.data_type, list(t.dims)) for t in counted if t.name in mine}
        assert mine == theirs


def test_cpu_bls_calls_tensorrt_llm_directly_and_is_otherwise_the_gpu_bls() -> None:
    """...with fewer instances (each a Python process) than on GPU."""
    repo = Repository(REPOSITORY)
    gpu, cpu = repo.config("tensorrt_llm_bls", "gpu"), repo.config("tensorrt_llm_bls", "cpu")
    assert gpu.parameters["llm_model"].string_value == "tensorrt_llm_counts"
    assert cpu.parameters["llm_model"].string_value == "tensorrt_llm"
    assert cpu.instance_group[0].count == llm.CPU_BLS_INSTANCES < gpu.instance_group[0].count
    gpu.instance_group[0].count = cpu.instance_group[0].count
    for key, value in (
        ("llm_model", "tensorrt_llm"),
        ("bls_models", "preprocessing,tensorrt_llm,postprocessing"),
    ):
        gpu.parameters[key].string_value = value
    _add_guided_inputs(gpu, cpu)
    assert cpu == gpu
