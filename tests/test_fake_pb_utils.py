"""The fake triton_python_backend_utils and its harness behave as the Python backend and Triton's core do."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests import fake_pb_utils as pb_utils
from tests.python_models import InvalidRequest, bls, config_json, load, row
from tritonfleet.repository import Repository

CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 4
{policy}
input [
  {{ name: "TEXT", data_type: TYPE_STRING, dims: [ 1 ] }},
  {{ name: "N", data_type: TYPE_INT32, dims: [ 1 ], reshape: {{ shape: [ ] }}, optional: true }}
]
output [
  {{ name: "UPPER", data_type: TYPE_STRING, dims: [ 1 ] }},
  {{ name: "LENGTH", data_type: TYPE_INT64, dims: [ 1 ] }}
]
parameters {{ key: "suffix", value: {{ string_value: "!" }} }}
"""

MODEL = """
import json
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.args = args
        config = json.loads(args["model_config"])
        self.suffix = config["parameters"]["suffix"]["string_value"]
        self.decoupled = pb_utils.using_decoupled_model_transaction_policy(config)

    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            if text[0, 0] == b"boom":
                raise RuntimeError("boom")
            n = pb_utils.get_input_tensor_by_name(request, "N")
            self.n_shape = None if n is None else n.as_numpy().shape
            upper = np.array([[t.decode().upper() + self.suffix for t in text[:, 0]]], dtype=object).T
            outputs = [pb_utils.Tensor("UPPER", upper),
                       pb_utils.Tensor("LENGTH", np.array([[len(t)] for t in text[:, 0]], dtype=np.int64)),
                       pb_utils.Tensor("NOT_IN_CONFIG", np.zeros(1, np.int32))]
            if self.decoupled:
                sender = request.get_response_sender()
                sender.send(pb_utils.InferenceResponse(outputs))
                sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            else:
                responses.append(pb_utils.InferenceResponse(outputs))
        return None if self.decoupled else responses
"""


def repository(tmp_path: Path, decoupled: bool = False) -> Path:
    root = tmp_path / "repo"
    (root / "echo" / "1").mkdir(parents=True)
    policy = "model_transaction_policy { decoupled: true }" if decoupled else ""
    (root / "echo" / "config.pbtxt").write_text(CONFIG.format(policy=policy))
    (root / "echo" / "1" / "model.py").write_text(textwrap.dedent(MODEL))
    return root


def test_args_are_those_triton_gives(tmp_path: Path) -> None:
    model = load("echo", repository=repository(tmp_path))
    args = model.instance.args
    assert args["model_repository"] == str(tmp_path / "repo" / "echo") and args["model_version"] == "1"
    assert (args["model_name"], args["model_instance_name"]) == ("echo", "echo_0_0")
    config = json.loads(args["model_config"])
    # As the server's /v2/models/<m>/config prints it: dims are numbers, unset fields printed with defaults.
    assert config["input"][0]["dims"] == [1] and config["input"][1]["reshape"] == {"shape": []}
    assert config["input"][0]["optional"] is False and config["max_batch_size"] == 4


def test_config_json_prints_int64_as_numbers() -> None:
    config = config_json(
        Repository(Path(__file__).resolve().parents[1] / "model_repository").config("ensemble")
    )
    dims = [t["dims"] for t in config["output"]]
    assert dims == [[-1], [-1], [-1, -1], [1], [1], [1]]
    assert all(step["model_version"] == -1 for step in config["ensemble_scheduling"]["step"])


def test_request_response_round_trip(tmp_path: Path) -> None:
    model = load("echo", repository=repository(tmp_path))
    answer = model.infer({"TEXT": [["abc"], ["de"]], "N": [[3], [4]]})
    assert model.instance.n_shape == (2,)  # the config's reshape: [batch, 1] -> [batch]
    # str inputs arrive as bytes; outputs outside the requested ones are pruned
    assert answer.outputs["UPPER"].tolist() == [[b"ABC!"], [b"DE!"]]
    assert answer.outputs["LENGTH"].tolist() == [[3], [2]] and "NOT_IN_CONFIG" not in answer.outputs
    only = model.infer(row(TEXT="x"), outputs={"LENGTH"})
    assert set(only.outputs) == {"LENGTH"}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, r"missing required input\(s\) \['TEXT'\]"),
        ({"TEXT": [["a"]], "M": [[1]]}, "unexpected inference input 'M'"),
        ({"TEXT": [["a"]], "N": np.array([[1]], dtype=np.int64)}, "data-type is 'int64'"),
        ({"TEXT": [["a", "b"]]}, r"Expected \[-1, 1\], got \[1, 2\]"),
        ({"TEXT": [["a"]] * 5}, "batch-size must be <= 4"),
        ({"TEXT": [["a"]] * 2, "N": [[1]]}, "different batch sizes"),
    ],
)
def test_triton_refuses_what_the_config_forbids(tmp_path: Path, inputs: dict, message: str) -> None:
    model = load("echo", repository=repository(tmp_path))
    with pytest.raises(InvalidRequest, match=message):
        model.request(inputs)


def test_a_missing_required_input_passes_when_the_count_is_right(tmp_path: Path) -> None:
    """Triton 24.10 checks how many inputs a request has, not which: the model must check the rest."""
    model = load("echo", repository=repository(tmp_path))
    assert [t.name() for t in model.request({"N": [[1]]}).inputs()] == ["N"]


def test_an_exception_in_execute_fails_every_request_of_the_batch(tmp_path: Path) -> None:
    model = load("echo", repository=repository(tmp_path))
    answers = model.execute([model.request(row(TEXT="fine")), model.request(row(TEXT="boom"))])
    for answer in answers:
        assert answer.error.code() == pb_utils.TritonError.INTERNAL
        assert "RuntimeError: boom" in answer.error.message()


def test_decoupled_sender(tmp_path: Path) -> None:
    model = load("echo", repository=repository(tmp_path, decoupled=True))
    answer = model.infer(row(TEXT="ok"))
    assert [t["UPPER"].tolist() for t in answer.stream] == [[[b"OK!"]]]
    assert [flags for _, flags in answer.sender.sent] == [0, pb_utils.FINAL]
    with pytest.raises(pb_utils.TritonModelException, match="has been closed"):
        answer.sender.send(pb_utils.InferenceResponse([]), flags=pb_utils.FINAL)


def test_sender_checks() -> None:
    request = pb_utils.InferenceRequest.incoming("m", [], {"X"}, decoupled=False)
    sender = request.get_response_sender()
    with pytest.raises(pb_utils.TritonModelException, match="must be provided"):
        sender.send()
    with pytest.raises(pb_utils.TritonModelException, match="Unsupported flag"):
        sender.send(pb_utils.InferenceResponse(), flags=2)
    sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("X", np.zeros(1))]))
    with pytest.raises(pb_utils.TritonModelException, match="more than one response"):
        sender.send(pb_utils.InferenceResponse())
    assert not sender.is_cancelled()
    request.cancelled = True
    assert sender.is_cancelled() and request.is_cancelled()


def test_tensor_and_error() -> None:
    with pytest.raises(pb_utils.TritonModelException, match="empty string"):
        pb_utils.Tensor("", np.zeros(1))
    with pytest.raises(TypeError, match="not a Triton data type"):
        pb_utils.Tensor("x", np.array(["unicode"]))
    assert pb_utils.Tensor("x", np.zeros((4, 4))[:, 1]).as_numpy().flags.c_contiguous
    assert pb_utils.TritonError("m").code() == pb_utils.TritonError.INTERNAL
    assert pb_utils.TritonError("m", pb_utils.TritonError.INVALID_ARG).code() == 3
    assert pb_utils.triton_string_to_numpy("TYPE_UINT64") is np.uint64  # the backend's own table


def test_bls_exec_is_routed_to_loaded_models(tmp_path: Path) -> None:
    model = load("echo", repository=repository(tmp_path))
    text = pb_utils.Tensor("TEXT", np.array([["bls"]], dtype=object))
    call = pb_utils.InferenceRequest(inputs=[text], requested_output_names=["UPPER"], model_name="echo")
    with bls({"echo": model}):
        response = call.exec()
        [streamed] = list(call.exec(decoupled=True))
        unknown = pb_utils.InferenceRequest(inputs=[], requested_output_names=[], model_name="nope").exec()
        bad = pb_utils.InferenceRequest(inputs=[], requested_output_names=[], model_name="echo").exec()
    assert pb_utils.get_output_tensor_by_name(response, "UPPER").as_numpy().tolist() == [[b"BLS!"]]
    assert pb_utils.get_output_tensor_by_name(response, "LENGTH") is None  # not requested
    assert not streamed.has_error()
    assert "not found" in unknown.error().message()
    assert "missing required input" in bad.error().message()  # Triton checks BLS requests too...
    assert bad.error().code() == pb_utils.TritonError.INTERNAL  # ...and the BLS caller gets no error code
    with pytest.raises(pb_utils.TritonModelException, match="no model answers BLS"):
        call.exec()


def test_metrics_and_logger() -> None:
    family = pb_utils.MetricFamily("f", "d", pb_utils.MetricFamily.COUNTER)
    counter = family.Metric(labels={"model": "m"})
    counter.increment(2)
    assert counter.value() == 2
    with pytest.raises(pb_utils.TritonModelException):
        counter.increment(-1)
    histogram = pb_utils.MetricFamily("h", "d", pb_utils.MetricFamily.HISTOGRAM).Metric(buckets=[1, 2])
    histogram.observe(1.5)
    assert histogram.observations == [1.5]
    pb_utils.Logger.log_warn("careful")
    assert pb_utils.LOG[-1] == ("WARNING", "careful")
