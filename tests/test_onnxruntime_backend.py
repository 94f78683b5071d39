"""The onnxruntime stand-in backend without a server: a dynamic batch runs once, and a request the graph
refuses fails alone, as the client's error (tests/python_models.py, the fake pb_utils)."""

from __future__ import annotations

import numpy as np
import pytest

from tests import fake_pb_utils as pb_utils
from tests.python_models import ONNXRUNTIME_BACKEND, load

onnx = pytest.importorskip("onnx")

CONFIG = """
name: "double"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x", data_type: TYPE_FP32, dims: [ -1 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ -1 ] } ]
parameters { key: "intra_op_thread_count", value: { string_value: "1" } }
"""


@pytest.fixture(scope="module")
def double(tmp_path_factory: pytest.TempPathFactory):
    """y = 2x over [batch, 4], though the config lets clients send any width: a graph stricter than its
    config, so Triton passes requests that onnxruntime refuses."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    root = tmp_path_factory.mktemp("repo")
    (root / "double" / "1").mkdir(parents=True)
    (root / "double" / "config.pbtxt").write_text(CONFIG)
    onnx.save(model, str(root / "double" / "1" / "model.onnx"))
    return load("double", model_file=ONNXRUNTIME_BACKEND, repository=root)


def test_a_dynamic_batch_is_split_back_per_request(double) -> None:
    a, b = np.arange(8, dtype=np.float32).reshape(2, 4), np.ones((1, 4), np.float32)
    answers = double.execute([double.request({"x": a}), double.request({"x": b})])
    assert [x.outputs["y"].tolist() for x in answers] == [(2 * a).tolist(), (2 * b).tolist()]


def test_a_request_the_graph_refuses_fails_alone(double) -> None:
    good, bad = np.ones((1, 4), np.float32), np.ones((1, 3), np.float32)
    first, refused, last = double.execute([double.request({"x": x}) for x in (good, bad, good)])
    assert first.outputs["y"].tolist() == last.outputs["y"].tolist() == [[2.0] * 4]
    assert refused.error.code() == pb_utils.TritonError.INVALID_ARG
    assert "onnxruntime:" in refused.error.message() and "Got: 3 Expected: 4" in refused.error.message()
