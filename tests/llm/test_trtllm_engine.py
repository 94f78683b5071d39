"""build/llm/trtllm_engine.py: the TensorRT-LLM 1.2.1 commands, their checks, the GPU config they imply."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import build_scripts
from tritonfleet.repository import parse_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "build" / "llm" / "trtllm_engine.py"
GPU_CONFIG = ROOT / "model_repository" / "tensorrt_llm" / "config.pbtxt"
CPU_CONFIG = ROOT / "model_repository" / "tensorrt_llm" / "configs" / "cpu.pbtxt"
PASSTHROUGH_CONFIG = ROOT / "model_repository" / "tensorrt_llm_passthrough" / "config.pbtxt"
CACHE = Path(os.environ.get("TRITONFLEET_CACHE", Path.home() / ".cache" / "tritonfleet")) / "llm"


te = build_scripts.load("build/llm/trtllm_engine.py")
CKPT = Path("/ckpt")
EX = "/tensorrtllm_backend/tensorrt_llm/examples"
HF = "/engines/smollm2-135m-instruct/trtllm.work/hf"
CONVERTED = "/engines/smollm2-135m-instruct/trtllm.work/checkpoint"
ENGINE = "/engines/smollm2-135m-instruct/trtllm"
BUILD = ["trtllm-build", "--checkpoint_dir", CONVERTED, "--output_dir", ENGINE, "--max_batch_size", "64",
         "--max_input_len", "2047", "--max_seq_len", "2048", "--max_num_tokens", "8192",
         "--max_beam_width", "1", "--gemm_plugin", "float16", "--gpt_attention_plugin", "float16",
         "--kv_cache_type", "paged",
         "--remove_input_padding", "enable", "--use_paged_context_fmha", "enable"]  # fmt: skip
CONVERT = ["python3", f"{EX}/models/core/llama/convert_checkpoint.py", "--model_dir", HF,
           "--output_dir", CONVERTED, "--dtype", "float16", "--tp_size", "1", "--pp_size", "1"]  # fmt: skip


def cached_checkpoint() -> Path | None:
    found = sorted(CACHE.glob("checkpoint-*/config.json"))
    return found[-1].parent if found else None


TOKENIZER_INFO = ["python3", f"{EX}/generate_xgrammar_tokenizer_info.py", "--model_dir", HF,
                  "--output_dir", ENGINE]  # fmt: skip


def test_default_commands() -> None:
    params = te.EngineParams(checkpoint=CKPT)
    assert te.convert_command(params) == CONVERT
    assert te.build_command(params) == BUILD
    assert te.tokenizer_info_command(params) == TOKENIZER_INFO


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_weight_only_commands(precision: str) -> None:
    params = te.EngineParams(checkpoint=CKPT, weight_only=precision)
    assert te.convert_command(params) == [*CONVERT, "--use_weight_only", "--weight_only_precision", precision]
    assert te.build_command(params) == BUILD  # the quantization travels in the converted checkpoint


def test_fp8_commands() -> None:
    params = te.EngineParams(checkpoint=CKPT, fp8=True, dtype="bfloat16", calib_dataset="/data/calib")
    assert te.convert_command(params) == [
        "python3", f"{EX}/quantization/quantize.py", "--model_dir", HF, "--output_dir", CONVERTED,
        "--dtype", "bfloat16", "--qformat", "fp8", "--kv_cache_dtype", "fp8", "--calib_size", "512",
        "--tp_size", "1", "--pp_size", "1", "--calib_dataset", "/data/calib",
    ]  # fmt: skip
    build = te.build_command(params)
    assert (
        build[build.index("--gemm_plugin") + 1]
        == build[build.index("--gpt_attention_plugin") + 1]
        == "bfloat16"
    )


def test_tensor_parallel_commands() -> None:
    params = te.EngineParams(checkpoint=CKPT, tp_size=2)
    assert params.gpus == 2
    convert = [*CONVERT[:-3], "2", "--pp_size", "1", "--workers", "2"]
    assert te.convert_command(params) == convert
    assert te.build_command(params) == [*BUILD, "--workers", "2"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"weight_only": "int4", "fp8": True}, "weight-only int8/int4 and fp8 are exclusive"),
        ({"weight_only": "int2"}, "weight-only quantization must be int8 or int4"),
        ({"dtype": "float32"}, "dtype must be float16 or bfloat16"),
        ({"max_input_len": 2048}, "max_input_len (2048) must be below max_seq_len (2048)"),
        ({"tp_size": 0}, "tp_size must be at least 1"),
        ({"pp_size": 0}, "pp_size must be at least 1"),
        (
            {"max_batch_size": 2, "max_seq_len": 1024, "max_input_len": 512},
            "exceeds max_batch_size * max_seq_len",
        ),
        ({"max_num_tokens": 32768, "max_batch_size": 64}, "max_num_tokens above 16384"),
        ({"paged_context_fmha": False, "max_num_tokens": 1024}, "needs chunked context"),
    ],
)
def test_invalid_params_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as info:
        te.EngineParams(checkpoint=CKPT, **changes)
    assert message in str(info.value)


def test_cli_rejects_invalid_params(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        te.main(["--checkpoint", "/ckpt", "--weight-only", "int8", "--fp8", "--print-commands"])
    assert info.value.code == 2
    assert "weight-only int8/int4 and fp8 are exclusive" in capsys.readouterr().err


def test_print_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert te.main(["--checkpoint", "/ckpt", "--weight-only", "int4", "--print-commands"]) == 0
    convert, build, info = capsys.readouterr().out.splitlines()
    assert convert.endswith("--use_weight_only --weight_only_precision int4")
    assert build.startswith("trtllm-build --checkpoint_dir ")
    assert info.endswith(f"generate_xgrammar_tokenizer_info.py --model_dir {HF} --output_dir {ENGINE}")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt_llm") is not None, reason="TensorRT-LLM is installed")
def test_without_tensorrt_llm_the_script_says_where_to_run(tmp_path: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), "--checkpoint", str(tmp_path), "--output", str(tmp_path / "engine")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Run this inside the GPU image" in result.stderr
    assert "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3" in result.stderr
    assert "trtllm-build --checkpoint_dir" in result.stderr
    assert not (tmp_path / "engine").exists()


def test_build_flow_with_stand_in_tools(tmp_path: Path) -> None:
    """The whole run against stand-ins for TensorRT-LLM's CLIs, nvidia-smi and the package."""
    log, bin_dir, site = tmp_path / "calls.log", tmp_path / "bin", tmp_path / "site"
    record = f'echo "$(basename "$0") $*" >> {log}\n'
    tools = {
        "nvidia-smi": "echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n",
        "trtllm-build": record + 'mkdir -p "$4" && echo "{}" > "$4/config.json"\n',
    }
    bin_dir.mkdir()
    for name, body in tools.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    (site / "tensorrt_llm").mkdir(parents=True)
    (site / "tensorrt_llm" / "__init__.py").write_text("")
    (site / "tensorrt_llm-1.2.1.dist-info").mkdir()
    (site / "tensorrt_llm-1.2.1.dist-info" / "METADATA").write_text("Name: tensorrt_llm\nVersion: 1.2.1\n")
    examples = tmp_path / "examples"
    (examples / "models" / "core" / "llama").mkdir(parents=True)
    (examples / "models" / "core" / "llama" / "convert_checkpoint.py").write_text(
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write('convert_checkpoint.py ' + ' '.join(sys.argv[1:]) + '\\n')\n"
        "cfg = json.load(open(sys.argv[2] + '/config.json'))\n"
        f"open({str(log)!r}, 'a').write('rope_theta ' + str(cfg['rope_theta']) + '\\n')\n"
    )
    (examples / "generate_xgrammar_tokenizer_info.py").write_text(
        "import sys\n"
        f"line = 'generate_xgrammar_tokenizer_info.py ' + ' '.join(sys.argv[1:])\n"
        f"open({str(log)!r}, 'a').write(line + '\\n')\n"
    )
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(SMOLLM2))
    engine = tmp_path / "engine"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(site)}
    cmd = [sys.executable, str(SCRIPT), "--checkpoint", str(ckpt), "--output", str(engine),
           "--examples", str(examples), "--weight-only", "int8"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert [c.split()[0] for c in calls] == [
        "convert_checkpoint.py", "rope_theta", "trtllm-build", "generate_xgrammar_tokenizer_info.py"
    ]  # fmt: skip
    assert calls[3].endswith(f"--output_dir {engine}")
    assert calls[1] == "rope_theta 100000.0"  # the staged config, read by the converter
    assert calls[0].endswith("--use_weight_only --weight_only_precision int8")
    report = json.loads((engine / "tritonfleet_build.json").read_text())
    assert report["triton_config"]["gpt_model_path"] == str(engine)
    assert report["triton_config"]["xgrammar_tokenizer_info_path"] == str(engine / te.XGRAMMAR_INFO)
    assert not (tmp_path / "engine.work").exists()

    result = subprocess.run([*cmd, "--tp", "2"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "tp_size 2 does not split 9 attention heads" in result.stderr
    assert "tp*pp = 2 GPUs, this machine has 1" in result.stderr


def test_committed_gpu_config_agrees_with_the_default_engine() -> None:
    config = parse_config(GPU_CONFIG)
    params = te.EngineParams(checkpoint=CKPT)
    assert te.config_problems(config, params) == []
    expected = te.triton_parameters(params)
    assert config.max_batch_size == expected["max_batch_size"] == 64
    assert config.parameters["gpt_model_path"].string_value == expected["gpt_model_path"]


def test_config_problems_are_found() -> None:
    config = parse_config(GPU_CONFIG)
    small = te.EngineParams(
        checkpoint=CKPT, max_batch_size=8, output=Path("/elsewhere"), paged_context_fmha=False
    )
    problems = te.config_problems(config, small)
    assert "max_batch_size 64, engine 8" in problems
    assert (
        "parameter gpt_model_path is '/engines/smollm2-135m-instruct/trtllm', engine wants '/elsewhere'"
        in problems
    )
    assert "enable_chunked_context is true but the engine has no paged context FMHA" in problems
    assert "enable_kv_cache_reuse is true but the engine has no paged context FMHA" in problems


def test_gpu_config_tensors_and_parameters_are_known_to_the_pinned_backend() -> None:
    config = parse_config(GPU_CONFIG)
    assert te.unsupported_tensors(config) == []
    assert te.unknown_parameters(config) == []
    for name in ("seed", "min_tokens", "num_return_sequences", "return_num_input_tokens",
                 "guided_decoding_guide_type", "guided_decoding_guide"):  # fmt: skip
        assert name in {t.name for t in config.input}, name
    assert {"num_input_tokens", "num_output_tokens"} <= {t.name for t in config.output}
    assert config.parameters["guided_decoding_backend"].string_value == "xgrammar"


def test_gpu_kv_cache_is_capped_at_the_engine_budget() -> None:
    """config.pbtxt caps the pool at max_batch_size sequences of max_seq_len tokens, the planner's budget,
    and bounds the fraction below TensorRT-LLM's 0.9 default."""
    from tritonfleet.pipelines.llm import interface as llm
    from tritonfleet.plan import memory

    config = parse_config(GPU_CONFIG)
    params = te.EngineParams(checkpoint=CKPT)
    kv = memory.kv_cache(
        layers=30, kv_heads=3, head_dim=64, dtype_bytes=2, max_batch_size=params.max_batch_size,
        max_seq_len=params.max_seq_len, tokens_per_block=64,
    )  # fmt: skip
    assert int(config.parameters["max_tokens_in_paged_kv_cache"].string_value) == kv.tokens == 131072
    assert (params.max_batch_size, params.max_seq_len) == (llm.ENGINE_MAX_BATCH_SIZE, llm.ENGINE_MAX_SEQ_LEN)
    assert float(config.parameters["kv_cache_free_gpu_mem_fraction"].string_value) < 0.9


def test_cpu_config_has_the_gpu_interface_plus_the_stop_id_and_the_passthrough() -> None:
    """The CPU model has the GPU interface (token counts and guided decoding included, as TensorRT-LLM 1.2.1's
    backend) plus each sequence's stop_request_id (for postprocessing to stop it when the client cancels)
    and the pass-through tensor it returns itself (on GPU tensorrt_llm_passthrough adds it)."""
    cpu, gpu = parse_config(CPU_CONFIG), parse_config(GPU_CONFIG)
    n_in, n_out = len(gpu.input), len(gpu.output)
    assert list(cpu.input)[:n_in] == list(gpu.input) and list(cpu.output)[:n_out] == list(gpu.output)
    extra = [t.name for t in list(cpu.input)[n_in:] + list(cpu.output)[n_out:]]
    assert sorted(extra) == sorted(["passthrough_in", "stop_request_id", "passthrough_out"])


def test_passthrough_step_forwards_only_tensors_the_backend_knows() -> None:
    """tensorrt_llm_passthrough adds the pass-through tensor; everything else it forwards to tensorrt_llm."""
    step = parse_config(PASSTHROUGH_CONFIG)
    assert te.unsupported_tensors(step) == ["passthrough_in", "passthrough_out"]
    gpu = parse_config(GPU_CONFIG)
    assert {t.name for t in step.input} - {t.name for t in gpu.input} == {"passthrough_in"}
    assert {t.name for t in gpu.output} <= {t.name for t in step.output}


SMOLLM2 = {
    "architectures": ["LlamaForCausalLM"], "num_attention_heads": 9, "num_key_value_heads": 3,
    "num_hidden_layers": 30, "max_position_embeddings": 8192, "dtype": "float32",
    "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
}  # fmt: skip


def test_checkpoint_problems() -> None:
    assert te.checkpoint_problems(SMOLLM2, te.EngineParams(checkpoint=CKPT)) == []
    assert te.checkpoint_problems(SMOLLM2, te.EngineParams(checkpoint=CKPT, tp_size=3)) == []
    assert te.checkpoint_problems(SMOLLM2, te.EngineParams(checkpoint=CKPT, tp_size=2)) == [
        "tp_size 2 does not split 9 attention heads / 3 KV heads evenly"
    ]
    assert te.checkpoint_problems(SMOLLM2, te.EngineParams(checkpoint=CKPT, pp_size=4)) == [
        "pp_size 4 does not split 30 layers evenly"
    ]
    long = te.EngineParams(checkpoint=CKPT, max_seq_len=16384, max_input_len=8192)
    assert te.checkpoint_problems(SMOLLM2, long) == ["max_seq_len 16384 exceeds the model's 8192 positions"]
    assert te.checkpoint_problems({"architectures": ["GPT2LMHeadModel"]}, long) == [
        "not a llama checkpoint: ['GPT2LMHeadModel']"
    ]


def test_stage_checkpoint_rewrites_the_transformers5_config(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(SMOLLM2))
    (ckpt / "model.safetensors").write_bytes(b"weights")
    params = te.EngineParams(checkpoint=ckpt, output=tmp_path / "engine")
    te.stage_checkpoint(params)
    staged = json.loads((params.hf_dir / "config.json").read_text())
    assert staged["rope_theta"] == 100000.0 and staged["torch_dtype"] == "float32"
    assert (params.hf_dir / "model.safetensors").resolve() == (ckpt / "model.safetensors").resolve()
    assert json.loads((ckpt / "config.json").read_text()) == SMOLLM2  # the original is untouched


def test_the_cached_checkpoint_needs_staging() -> None:
    ckpt = cached_checkpoint()
    if ckpt is None:
        pytest.skip("no cached checkpoint: run python build/llm/cpu_engine.py")
    config = json.loads((ckpt / "config.json").read_text())
    assert te.checkpoint_problems(config, te.EngineParams(checkpoint=ckpt)) == []
    assert te.legacy_hf_config(config)["rope_theta"] == 100000.0  # SmolLM2's RoPE base


@pytest.mark.gpu
def test_real_engine_build(tmp_path: Path) -> None:
    """Builds a small engine in the GPU image and compares greedy tokens with transformers."""
    pytest.importorskip("tensorrt_llm")
    ckpt = cached_checkpoint()
    examples = Path(os.environ.get("TRTLLM_EXAMPLES", te.EXAMPLES_DIR))
    if ckpt is None or shutil.which("trtllm-build") is None or not examples.is_dir():
        pytest.skip(
            "needs the cached checkpoint, trtllm-build and TensorRT-LLM's examples ($TRTLLM_EXAMPLES)"
        )
    engine = tmp_path / "engine"
    args = ["--checkpoint", str(ckpt), "--output", str(engine), "--examples", str(examples),
            "--max-batch-size", "4", "--max-input-len", "256", "--max-seq-len", "512",
            "--max-num-tokens", "1024"]  # fmt: skip
    assert subprocess.run([sys.executable, str(SCRIPT), *args], timeout=1800).returncode == 0
    built = json.loads((engine / "config.json").read_text())["build_config"]
    assert (built["max_batch_size"], built["max_seq_len"], built["max_num_tokens"]) == (4, 512, 1024)
    assert built["plugin_config"]["use_paged_context_fmha"] is True
    assert (engine / "rank0.engine").is_file()

    import torch
    from tensorrt_llm.runtime import ModelRunnerCpp
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(ckpt)("The capital of France is", return_tensors="pt").input_ids
    reference = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32).generate(
        ids, max_new_tokens=8, do_sample=False
    )[0, ids.shape[1] :]
    runner = ModelRunnerCpp.from_dir(engine_dir=str(engine))
    out = runner.generate([ids[0].int()], max_new_tokens=8, end_id=2, pad_id=2)
    assert out[0, 0, ids.shape[1] : ids.shape[1] + 4].tolist() == reference[:4].tolist()
