"""Memory per model: CUDA contexts by process, TensorRT activations from the graph, the engine build's
limits read from its script."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet.plan import memory, pack, spec

PYTHON_MODEL = """
name: "gpu_python"
backend: "python"
max_batch_size: 8
input [ { name: "X", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [ { name: "Y", data_type: TYPE_FP32, dims: [ 4 ] } ]
instance_group [ { count: 2, kind: KIND_GPU } ]
"""


def config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def test_python_models_on_a_gpu_count_a_context_per_instance_and_cpu_ones_nothing(tmp_path: Path) -> None:
    gpu = memory.model_demand(tmp_path, config(PYTHON_MODEL))
    assert gpu.role == memory.ROLE_GPU and gpu.instances == 2
    assert [(a.label, a.bytes) for a in gpu.per_instance] == [("CUDA context", memory.CUDA_CONTEXT)]
    cpu = memory.model_demand(
        tmp_path, config(PYTHON_MODEL.replace("KIND_GPU", "KIND_CPU").replace("gpu_python", "cpu_python"))
    )
    assert cpu.role == memory.ROLE_CPU and not cpu.on_gpu and cpu.shared == cpu.per_instance == ()
    plan = pack.pack([gpu, cpu], spec.parse("1xT4"), "py")
    (slot,) = plan.gpus[0].slots
    assert slot.model == "gpu_python" and slot.bytes == 2 * memory.CUDA_CONTEXT
    assert plan.placement("gpu_python").groups[0].count == 2


def test_tensorrt_activations_come_from_the_graph_at_max_batch(fleet) -> None:
    effnet = next(d for d in fleet if d.model == "efficientnet_lite0")
    activations, io, workspace = effnet.per_instance
    if "model.onnx" not in activations.source:
        import pytest

        pytest.skip("efficientnet_lite0 is not built (fleet build)")
    assert "input 32x3x224x224" in activations.source
    # The input batch alone is 32 x 3 x 224 x 224 fp32 = 19,267,584 bytes, the output 32 x 1000 x 4.
    assert io.bytes == 19_267_584 + 128_000
    # A stem convolution's output at batch 32 (32 x 32 x 112 x 112 fp32 = 51 MiB) is alive at some point.
    assert activations.bytes > 32 * 32 * 112 * 112 * 4
    assert workspace.bytes == memory.TRT_WORKSPACE
    minilm = next(d for d in fleet if d.model == "minilm_l6")
    assert "input_ids 64x256" in minilm.per_instance[0].source  # tensorrt_max_shapes' 256 word pieces


def test_engine_limits_come_from_the_build_script() -> None:
    defaults = memory.engine_defaults()
    wanted = {
        "dtype": "float16",
        "max_batch_size": 64,
        "max_seq_len": 2048,
        "max_num_tokens": 8192,
        "tp_size": 1,
    }
    assert {k: defaults[k] for k in wanted} == wanted
