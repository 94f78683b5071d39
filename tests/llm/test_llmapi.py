"""The LLM-API variant of the repository (fleet render --llm-path llmapi), without a server: its configs
parse with Triton's schema and validate, the adapter keeps the engine path's client interface, every mapping
targets a tensor NVIDIA's llmapi model has, model.yaml holds LLM-API arguments and the plan's KV cap, and the
adapter's model logic translates requests and responses. Loading it on a GPU is the ``gpu``-marked test."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from tokenizers import Tokenizer

from tests import build_scripts, python_models
from tests import fake_pb_utils as pb_utils
from tests.conftest import copy_repository
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.cli import main
from tritonfleet.deploy import llmapi as variant
from tritonfleet.pipelines.llm import interface as llm
from tritonfleet.pipelines.llm import llmapi
from tritonfleet.pipelines.loading import models_to_load
from tritonfleet.plan import memory, pack, render, spec
from tritonfleet.repository import Repository, parse_config
from tritonfleet.validate import validate_repository

te = build_scripts.load("build/llm/trtllm_engine.py")
CACHE = Path(os.environ.get("TRITONFLEET_CACHE", Path.home() / ".cache" / "tritonfleet")) / "llm"


def interface(config) -> dict:
    """What a client sees of a config: tensors (data type, dims, optional), max_batch_size, decoupled."""
    return {
        "inputs": {t.name: (t.data_type, list(t.dims), t.optional) for t in config.input},
        "outputs": {t.name: (t.data_type, list(t.dims)) for t in config.output},
        "max_batch_size": config.max_batch_size,
        "decoupled": config.model_transaction_policy.decoupled,
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("llmapi") / "repository"
    variant.write_variant(REPOSITORY, out)
    return out


def test_the_variant_parses_and_validates(repo: Path) -> None:
    assert validate_repository(repo, variant.variant_models()) == []
    names = Repository(repo).names()
    assert set(llmapi.DROPPED).isdisjoint(names) and {"llmapi_adapter", "ensemble", "rag"} <= set(names)
    for name in ("tensorrt_llm", "llmapi_adapter", "ensemble", "tensorrt_llm_bls", "rag"):
        parse_config(repo / name / "config.pbtxt")  # Triton's ModelConfig schema
    llm_dir = repo / "tensorrt_llm" / "1"
    assert [os.readlink(llm_dir / n) for n in llmapi.LLMAPI_FILES] == [
        f"{llmapi.IMAGE_LLMAPI_DIR}/{n}" for n in llmapi.LLMAPI_FILES
    ]
    # Validation is not blind to the variant: the engine path's declarations do not describe it.
    assert validate_repository(repo)
    # fleet serve loads the adapter and the LLM-API model, not preprocessing (kept for the OpenAI app's
    # tokenizer folder).
    loaded = models_to_load(repo, ["llm", "rag"], target="gpu")
    assert {"tensorrt_llm", "llmapi_adapter", "ensemble", "tensorrt_llm_bls", "rag"} <= set(loaded)
    assert "preprocessing" not in loaded and (repo / "preprocessing").is_symlink()


def test_a_broken_variant_is_caught(tmp_path: Path) -> None:
    out = tmp_path / "repository"
    variant.write_variant(REPOSITORY, out)
    path = out / "ensemble" / "config.pbtxt"
    path.write_text(path.read_text().replace('value: "max_tokens"', 'value: "max_token"', 1))
    assert any("max_token" in str(p) for p in validate_repository(out, variant.variant_models()))


@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls", "rag"])
def test_clients_see_the_engine_paths_interface(repo: Path, model: str) -> None:
    assert interface(parse_config(repo / model / "config.pbtxt")) == interface(
        parse_config(REPOSITORY / model / "config.pbtxt")
    )


def test_every_mapping_targets_a_tensor_the_llmapi_model_has(repo: Path) -> None:
    config = parse_config(repo / "tensorrt_llm" / "config.pbtxt")
    theirs = {t.name: (t.data_type, list(t.dims)) for t in config.input}
    assert set(theirs) == {t.name for t in llmapi.LLMAPI_INPUTS}
    ours = {t.name: t for t in llm.LLM_INPUTS}
    for client, name in llmapi.TO_LLMAPI.items():
        assert name in theirs, name
        assert (
            theirs[name][0]
            == parse_config(REPOSITORY / "ensemble" / "config.pbtxt")
            .input[[t.name for t in llm.LLM_INPUTS].index(client)]
            .data_type
        ), client
        assert ours[client].dims in ((1,), (-1,)) and len(theirs[name][1]) == 1  # one row: [1] or [-1]
    # Every client input is mapped, done by the adapter, or refused unless neutral.
    handled = set(llmapi.TO_LLMAPI) | set(llmapi.UNSUPPORTED) | set(llmapi.BY_ADAPTER)
    assert handled == set(ours)
    assert (config.backend, config.max_batch_size, config.model_transaction_policy.decoupled) == (
        "python",
        0,
        True,
    )


def test_model_yaml_holds_llm_api_arguments(repo: Path) -> None:
    options = yaml.safe_load((repo / "tensorrt_llm" / "1" / "model.yaml").read_text())
    assert set(options) - {"triton_config"} <= llmapi.LLM_API_ARGS
    assert set(options["kv_cache_config"]) <= llmapi.KV_CACHE_ARGS
    assert set(options["triton_config"]) <= llmapi.TRITON_CONFIG_KEYS
    config = parse_config(repo / "tensorrt_llm" / "config.pbtxt")
    assert options["triton_config"]["max_batch_size"] == config.max_batch_size
    assert options["triton_config"]["decoupled"] == config.model_transaction_policy.decoupled
    # The engine build's limits, the engine config's KV cap (never the 0.9 default).
    params = te.EngineParams(checkpoint=Path("/ckpt"))
    assert {k: options[k] for k in te.llm_api_options(params)} == te.llm_api_options(params)
    engine = parse_config(REPOSITORY / "tensorrt_llm" / "config.pbtxt").parameters
    kv = options["kv_cache_config"]
    assert kv["max_tokens"] == int(engine["max_tokens_in_paged_kv_cache"].string_value)
    assert (
        kv["free_gpu_memory_fraction"] == float(engine["kv_cache_free_gpu_mem_fraction"].string_value) < 0.9
    )
    assert options["backend"] == "pytorch" and options["model"] == llmapi.CHECKPOINT


def test_the_kv_cap_follows_the_plan(tmp_path: Path) -> None:
    """fleet plan writes the LLM-API model.yaml beside the engine's planned config; the variant takes it.
    A plan with another share of the GPU gives another cap."""
    root = copy_repository(tmp_path / "model_repository")
    caps = {}
    for gpus in ("1xL4", "1xA100-80GB"):
        name = gpus.lower()
        assert main(["--repository", str(root), "plan", "--gpus", gpus, "--output", str(tmp_path / "r")]) == 0
        out = tmp_path / name
        assert main(["--repository", str(root), "render", "--llm-path", "llmapi", "--output", str(out),
                     "--plan", name]) == 0  # fmt: skip
        kv = yaml.safe_load((out / "tensorrt_llm" / "1" / "model.yaml").read_text())["kv_cache_config"]
        report = json.loads((tmp_path / "r" / f"{name}.json").read_text())["llm"][0]
        assert kv == report["llm_api_kv_cache_config"] | {"enable_block_reuse": True}
        planned = parse_config(root / "tensorrt_llm" / "configs" / f"{name}.pbtxt").parameters
        assert kv["free_gpu_memory_fraction"] == float(planned["kv_cache_free_gpu_mem_fraction"].string_value)
        assert kv["max_tokens"] == int(planned["max_tokens_in_paged_kv_cache"].string_value)
        assert validate_repository(out, variant.variant_models()) == []
        caps[gpus] = kv["free_gpu_memory_fraction"]
    assert caps["1xL4"] != caps["1xA100-80GB"] and all(0 < c < 0.9 for c in caps.values())
    assert main(["--repository", str(root), "render", "--llm-path", "llmapi", "--output",
                 str(tmp_path / "x"), "--plan", "nope"]) == 2  # fmt: skip


def test_plan_tensor_parallelism_reaches_model_yaml() -> None:
    demands = memory.fleet(Repository(REPOSITORY), {"tensorrt_llm": 3})
    plan = pack.pack(demands, spec.parse("3xL4"), "tp3")
    [lp] = plan.llm
    options = render.llmapi_options(plan)["tensorrt_llm"]
    assert options["tensor_parallel_size"] == 3 and lp.gpus == (0, 1, 2)
    assert options["kv_cache_config"]["max_gpu_total_bytes"] == lp.kv_bytes


# -- the adapter's model logic, against a stand-in for NVIDIA's llmapi model ---------------------------------


def cached_checkpoint() -> Path:
    found = sorted(CACHE.glob("checkpoint-*/tokenizer.json"))
    if not found:
        pytest.skip("the LLM checkpoint is not cached yet (fleet build llm)")
    return found[-1].parent


WORDS = ("Paris", " is", " the", " capital")


class LlmApiStandIn:
    """Answers as NVIDIA's llmapi model.py does (its _create_response): each streamed response carries the
    whole text so far (output.text), a non-streamed request one response, then the empty final one; a stop
    request gets CANCELLED. Records what it was sent, to check the adapter's mapping."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, np.ndarray]]] = []

    def __call__(self, request, decoupled):
        inputs = {t.name(): pb_utils.crossed(t).as_numpy() for t in request.inputs()}
        self.calls.append((request.request_id(), inputs))
        if "stop" in inputs:
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError("Request cancelled by client"))]
        texts = ["".join(WORDS[: i + 1]) for i in range(len(WORDS))]
        if not inputs["streaming"][0]:
            texts = texts[-1:]
        out = [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("text_output", np.array([t.encode()], dtype=np.object_))]
            )
            for t in texts
        ]
        return [*out, pb_utils.InferenceResponse()]


@pytest.fixture
def adapter(repo: Path):
    checkpoint = cached_checkpoint()
    stand_in = LlmApiStandIn()
    models = {}
    with python_models.bls({"tensorrt_llm": stand_in}):
        for name in ("llmapi_adapter", "tensorrt_llm_bls"):
            models[name] = python_models.load(
                name, target="gpu", repository=repo, parameters={"tokenizer_dir": str(checkpoint)}
            )
        yield models, stand_in, Tokenizer.from_file(str(checkpoint / "tokenizer.json"))


def test_streamed_rows_become_deltas_with_counts_and_batch_index(adapter) -> None:
    models, stand_in, tokenizer = adapter
    prompts = ["The capital of France?", "Say Paris."]
    inputs = {
        "text_input": [[p] for p in prompts],
        "max_tokens": [[16], [8]],
        "stream": [[True], [True]],
        "top_k": [[5], [0]],
        "top_p": [[0.0], [0.0]],
        "random_seed": [[7], [8]],
        "return_num_input_tokens": [[True], [True]],
        "return_num_output_tokens": [[True], [True]],
        "passthrough_in": [["a#0"], ["b#1"]],
    }
    stream = models["llmapi_adapter"].infer(inputs, request_id="r").wait().stream
    by_row: dict[int, list[dict]] = {0: [], 1: []}
    for response in stream:
        by_row[int(response["batch_index"][0, 0])].append(response)
    for b, responses in by_row.items():
        text = "".join(r["text_output"][0, 0].decode() for r in responses)
        assert text == "".join(WORDS) and len(responses) == len(WORDS)
        prompt_tokens = len(tokenizer.encode(prompts[b]).ids)
        assert {int(r["num_input_tokens"][0, 0]) for r in responses} == {prompt_tokens}
        assert int(responses[-1]["num_output_tokens"][0, 0]) == len(
            tokenizer.encode(text, add_special_tokens=False).ids
        )
        assert [r.get("passthrough_out") is not None for r in responses] == [True] + [False] * (
            len(WORDS) - 1
        )
    sent = {rid: inputs for rid, inputs in stand_in.calls}
    assert sorted(sent) == ["r-0", "r-1"]
    row1 = sent["r-1"]
    assert row1["text_input"].tolist() == [b"Say Paris."]
    assert (
        row1["sampling_param_max_tokens"].tolist() == [8]
        and row1["sampling_param_max_tokens"].dtype == np.int32
    )
    assert row1["sampling_param_seed"].tolist() == [8] and row1["sampling_param_seed"].dtype == np.uint64
    assert row1["sampling_param_top_k"].tolist() == [1] and "sampling_param_top_p" not in row1  # greedy
    assert sent["r-0"]["sampling_param_top_k"].tolist() == [5] and "sampling_param_top_p" not in sent["r-0"]
    assert row1["sampling_param_exclude_input_from_output"].tolist() == [True]  # the engine path's default
    assert row1["streaming"].tolist() == [True]


def test_chat_template_and_one_response_for_the_bls(adapter) -> None:
    models, stand_in, _ = adapter
    answer = models["tensorrt_llm_bls"].infer(
        {"text_input": [["Hi"]], "max_tokens": [[4]], "apply_chat_template": [[True]], "temperature": [[0.5]]}
    )
    assert answer.outputs["text_output"].tolist() == [["".join(WORDS).encode()]]
    [(_, sent)] = stand_in.calls
    prompt = sent["text_input"][0].decode()
    assert prompt.endswith("assistant\n") and "Hi" in prompt and prompt != "Hi"
    assert sent["streaming"].tolist() == [False] and sent["sampling_param_temperature"].dtype == np.float32
    refused = models["tensorrt_llm_bls"].infer(
        {"text_input": [["Hi"]], "max_tokens": [[4]], "stream": [[True]]}
    )
    assert refused.error.code() == pb_utils.TritonError.INVALID_ARG


@pytest.mark.parametrize(
    ("name", "value", "refused"),
    [("beam_width", 2, True), ("beam_width", 1, False), ("guided_decoding_guide_type", "json", True),
     ("repetition_penalty", 1.2, True), ("bad_words", "", False), ("num_return_sequences", 2, True)],
)  # fmt: skip
def test_inputs_the_llmapi_model_lacks_are_refused_unless_neutral(adapter, name, value, refused) -> None:
    models, stand_in, _ = adapter
    answer = models["llmapi_adapter"].infer({"text_input": [["Hi"]], "max_tokens": [[4]], name: [[value]]})
    error = answer.wait().error
    if refused:
        assert (
            error is not None and error.code() == pb_utils.TritonError.INVALID_ARG and name in error.message()
        )
        assert stand_in.calls == []
    else:
        assert error is None and len(stand_in.calls) == 1


def test_a_cancelled_stream_sends_the_llmapi_stop_request(adapter) -> None:
    models, stand_in, _ = adapter
    model = models["llmapi_adapter"]
    request = model.request({"text_input": [["Hi"]], "max_tokens": [[4]], "stream": [[True]]}, request_id="c")
    request.cancelled = True  # the client cancelled: the first response is the last
    [answer] = model.execute([request])
    assert len(answer.wait().responses) == 1
    assert [(rid, sorted(inputs)) for rid, inputs in stand_in.calls][1] == ("c-0", ["stop", "text_input"])


def test_an_error_of_the_llmapi_model_is_the_requests(adapter) -> None:
    models, _, _ = adapter

    def failing(request, decoupled):
        return [pb_utils.InferenceResponse(error=pb_utils.TritonError("Error generating request: bad stop"))]

    pb_utils.bls_handler = python_models.bls_router({"tensorrt_llm": failing})
    answer = models["llmapi_adapter"].infer({"text_input": [["Hi"]], "max_tokens": [[4]]}).wait()
    assert answer.error is not None and "tensorrt_llm: Error generating request" in answer.error.message()


# -- on a GPU, in the image ---------------------------------------------------------------------------------


@pytest.mark.gpu
def test_the_variant_serves_on_a_gpu(tmp_path: Path) -> None:
    """In the GPU image: the variant loads with the image's llmapi model.py and answers through
    tensorrt_llm_bls and the streaming ensemble. Skipped without TensorRT-LLM, the image's llmapi files,
    the checkpoint or tritonserver."""
    if importlib.util.find_spec("tensorrt_llm") is None or shutil.which("tritonserver") is None:
        pytest.skip("needs the GPU image (tensorrt_llm, tritonserver)")
    if not (Path(llmapi.IMAGE_LLMAPI_DIR) / "model.py").is_file() or not Path(llmapi.CHECKPOINT).is_dir():
        pytest.skip(f"needs {llmapi.IMAGE_LLMAPI_DIR} and {llmapi.CHECKPOINT} (docker/Dockerfile)")
    out = tmp_path / "repository"
    variant.write_variant(REPOSITORY, out)
    models = ["tensorrt_llm", "llmapi_adapter", "ensemble", "tensorrt_llm_bls"]
    server = subprocess.Popen(
        ["tritonserver", f"--model-repository={out}", "--model-control-mode=explicit", "--http-port=18000",
         "--grpc-port=18001", "--metrics-port=18002", *(f"--load-model={m}" for m in models)]
    )  # fmt: skip
    try:
        for _ in range(600):
            try:
                if urllib.request.urlopen("http://127.0.0.1:18000/v2/health/ready").status == 200:
                    break
            except OSError:
                time.sleep(1)
        body = json.dumps({"text_input": "The capital of France is", "max_tokens": 8,
                           "return_num_output_tokens": True}).encode()  # fmt: skip
        for model in ("tensorrt_llm_bls", "ensemble"):
            url = f"http://127.0.0.1:18000/v2/models/{model}/generate"
            reply = json.loads(urllib.request.urlopen(urllib.request.Request(url, body)).read())
            assert reply["text_output"].strip() and 0 < reply["num_output_tokens"] <= 8, reply
    finally:
        server.terminate()
        server.wait(60)
