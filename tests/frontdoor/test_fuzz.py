"""Fuzz the image and LLM pipelines on the session server: a few thousand malformed raw gRPC requests
generated from the models' configs (tritonfleet.tools.fuzz), concurrently. A client's mistake is
INVALID_ARGUMENT (a stream's error carries no code: its message must not report a fault), every request is
answered, no model process dies, and correct requests get the same answers afterwards."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2_grpc

from tests.llm.conftest import inputs
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.pipelines.llm.errors import is_fault
from tritonfleet.repository import Repository
from tritonfleet.tools import fuzz
from tritonfleet.tools.fuzz.grpc import grpc_request, is_decoupled, send_grpc

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
ID = "stop_request_id"  # tensorrt_llm's: a new one for every request
CASES_PER_MODEL = 400
THREADS = 8


def examples(jpeg: bytes) -> dict[str, dict]:
    """A correct request for each model of the two pipelines (what the fuzzer mutates)."""
    prompt = CHAT.format("Say hi.")
    pixels = np.linspace(-1, 1, 3 * 224 * 224, dtype=np.float32).reshape(1, 3, 224, 224)
    return {
        "image_classifier": {"IMAGE": [[jpeg]]},
        "image_preprocess": {"IMAGE": [[jpeg]]},
        "efficientnet_lite0": {"input": pixels},
        "preprocessing": {"QUERY": [[prompt]], "REQUEST_OUTPUT_LEN": [[2]], "STOP_WORDS_DICT": [["x"]],
                          "END_ID": [[2]]},
        "postprocessing": {"TOKENS_BATCH": [[[504, 3575]]], "SEQUENCE_LENGTH": [[2]]},
        "tensorrt_llm_bls": {"text_input": [[prompt]], "max_tokens": [[2]], "temperature": [[1.0]],
                             "top_k": [[1]], "stop_words": [["x"]]},
        "ensemble": {"text_input": [[prompt]], "max_tokens": [[2]], "stream": [[True]], "top_p": [[0.5]],
                     "bad_words": [["y"]]},
        "tensorrt_llm": {"input_ids": [[1, 4093, 198]], "input_lengths": [[3]], "request_output_len": [[2]],
                         "streaming": [[True]], "stop_words_list": [[[30], [1]]]},
    }  # fmt: skip


def answer(url: str, model: str, values: dict, decoupled: bool) -> list[dict[str, list]]:
    """The outputs of a correct request: each response's tensors (as lists), ids left out."""
    client = grpcclient.InferenceServerClient(url)
    request = inputs(
        model, {n: np.asarray(v, dtype=object if _is_text(v) else None) for n, v in values.items()}
    )
    if not decoupled:
        result = client.infer(model, request)
        return [
            {o.name: result.as_numpy(o.name).tolist() for o in result.get_response().outputs if o.name != ID}
        ]
    import queue

    got: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: got.put((result, error)))
    client.async_stream_infer(model, request, enable_empty_final_response=True)
    responses = []
    while True:
        result, error = got.get(timeout=120)
        assert error is None, error
        outputs = result.get_response().outputs
        if outputs:
            responses.append({o.name: result.as_numpy(o.name).tolist() for o in outputs if o.name != ID})
        if result.get_response().parameters["triton_final_response"].bool_param:
            client.stop_stream()
            return responses


def _is_text(value) -> bool:
    while isinstance(value, list):
        value = value[0] if value else None
    return isinstance(value, str | bytes)


def test_no_client_mistake_is_a_server_error(server, cat_jpeg) -> None:
    repo = Repository(REPOSITORY)
    models = examples(cat_jpeg)
    decoupled = {name: is_decoupled(repo, name) for name in models}
    before = {name: answer(server.grpc_url, name, values, decoupled[name]) for name, values in models.items()}
    stubs = server.stub_pids()
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
    seen: Counter = Counter()
    wrong = []
    for name, values in models.items():
        cases = list(fuzz.cases(repo.config(name), values, CASES_PER_MODEL, seed=len(name)))
        with ThreadPoolExecutor(THREADS) as pool:
            outcomes = list(pool.map(lambda c, d=decoupled[name]: send_grpc(stub, c, d), cases))
        for case, outcome in zip(cases, outcomes, strict=True):
            seen[name, outcome.code, bool(outcome.errors)] += 1
            if (
                outcome.code not in ("OK", "INVALID_ARGUMENT")
                or not outcome.ended
                or any(map(is_fault, outcome.errors))
            ):
                wrong.append(f"{name} {case.kind} ({case.note}): {outcome}")
    assert wrong == [], f"{len(wrong)} of {sum(seen.values())}:\n" + "\n".join(wrong[:20])
    # Every model saw the mistakes: refused by Triton or by the model (a stream's errors come as messages).
    for name in models:
        refused = seen[name, "INVALID_ARGUMENT", True] + (seen[name, "OK", True] if decoupled[name] else 0)
        assert refused > CASES_PER_MODEL / 2, (name, seen)
    assert server.is_ready() and server.stub_pids() == stubs  # no model process died
    after = {name: answer(server.grpc_url, name, values, decoupled[name]) for name, values in models.items()}
    assert after == before


def test_a_string_cut_short_fails_only_its_own_request(server, cat_jpeg) -> None:
    """Triton 24.10 lets a STRING input whose last element is cut short through to the model's backend, which
    fails it there; with a dynamic batcher it failed every request of the batch (and the model could not be
    unloaded any more), so no Python model with STRING inputs has one (see the next test)."""
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.grpc_url))
    good = fuzz.Case("image_preprocess", "ok", (fuzz.tensor("IMAGE", [[cat_jpeg]], "BYTES"),), "")
    image = good.inputs[0]
    cut = fuzz.Case(
        "image_preprocess", "size", (fuzz.Tensor("IMAGE", "BYTES", image.shape, image.raw[:-1]),), ""
    )
    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = list(pool.map(lambda c: send_grpc(stub, c, False), [good, cut] * 40))
    assert [o.code for o in outcomes[::2]] == ["OK"] * 40
    assert {(o.code, "incomplete string data" in o.errors[0]) for o in outcomes[1::2]} == {
        ("INVALID_ARGUMENT", True)
    }


@pytest.mark.parametrize("target", ["gpu", "cpu"])
def test_no_python_model_with_string_inputs_has_a_dynamic_batcher(target: str) -> None:
    repo = Repository(REPOSITORY)
    for name in fuzz_models():
        config = repo.config(name, target)
        strings = [t.name for t in config.input if t.data_type == mc.TYPE_STRING]
        if config.backend == "python" and strings:
            assert not config.HasField("dynamic_batching"), f"{name} [{target}]: STRING inputs {strings}"


def fuzz_models() -> list[str]:
    return list(examples(b"").keys())


def test_the_generator_makes_each_kind_of_mistake_reproducibly() -> None:
    config = Repository(REPOSITORY).config("tensorrt_llm_bls")
    example = {"text_input": [["hi"]], "max_tokens": [[2]]}
    cases = list(fuzz.cases(config, example, 40, seed=3))
    assert (
        cases
        == list(fuzz.cases(config, example, 40, seed=3))
        != list(fuzz.cases(config, example, 40, seed=4))
    )
    assert Counter(c.kind for c in cases) == {kind: 4 for kind in fuzz.KINDS}
    base = {t.name: t for t in fuzz.example_tensors(config, example)}
    assert base["text_input"] == fuzz.Tensor("text_input", "BYTES", (1, 1), b"\x02\x00\x00\x00hi")
    assert base["max_tokens"] == fuzz.Tensor("max_tokens", "INT32", (1, 1), b"\x02\x00\x00\x00")
    for case in cases:
        sent = {t.name: t for t in case.inputs}
        if case.kind == "missing":
            assert set(sent) < set(base)
        elif case.kind == "size":
            assert any(len(t.raw) != len(base[n].raw) and t.shape == base[n].shape for n, t in sent.items())
        elif case.kind == "batch":
            assert {t.shape[0] for t in case.inputs} - {1}  # 0, 65 or a second batch size
        elif case.kind == "dtype":
            assert any(t.datatype != base[n].datatype for n, t in sent.items())
    request = grpc_request(cases[0], request_id="r", streaming=True)
    assert (request.model_name, request.id) == ("tensorrt_llm_bls", "r")
    assert request.parameters["triton_enable_empty_final_response"].bool_param
    assert len(request.inputs) == len(request.raw_input_contents) == len(cases[0].inputs)


def test_the_generator_refuses_an_example_for_another_model() -> None:
    with pytest.raises(ValueError, match="has no input"):
        fuzz.example_tensors(Repository(REPOSITORY).config("postprocessing"), {"IMAGE": [[b""]]})


def test_ensembles_with_a_decoupled_step_are_decoupled() -> None:
    repo = Repository(REPOSITORY)
    assert is_decoupled(repo, "ensemble") and is_decoupled(repo, "tensorrt_llm")
    assert not is_decoupled(repo, "image_classifier") and not is_decoupled(repo, "tensorrt_llm_bls")
