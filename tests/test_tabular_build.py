"""The tabular pipeline without a server: the build (deterministic, checked against the configs), the
client's row handling, ``fleet infer``'s row formats, and the onnxruntime backend's per-request errors."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.build_scripts import load
from tests.conftest import copy_repository
from tritonfleet import artifacts, pipelines
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.clients import tabular as client
from tritonfleet.pipelines.tabular import PROBE_ROWS, parse_row, read_rows
from tritonfleet.server import BACKENDS_SOURCE

train = load("build/tabular/train.py")


@pytest.mark.parametrize("model", client.MODELS)
def test_build_is_deterministic_and_is_what_the_repository_serves(model: str, tmp_path: Path) -> None:
    report = train.build(model, REPOSITORY, tmp_path)
    served = REPOSITORY / model / "1" / "model.onnx"
    assert artifacts.sha256(tmp_path / "model.onnx") == artifacts.sha256(served)
    assert report["parity"]["labels_differing"] == 0
    assert report["parity"]["max_abs_probability_difference"] <= 1e-5
    assert report["rows"] == {"breast_cancer_xgboost": 569, "wine_sklearn": 178}[model]
    assert report["test_accuracy"] > 0.93
    assert json.loads((tmp_path / "training.json").read_text()) == report


def test_build_refuses_configs_that_disagree_with_the_dataset(tmp_path: Path) -> None:
    repo = copy_repository(tmp_path / "repo")
    config = repo / "wine_sklearn" / "config.pbtxt"
    text = config.read_text()
    config.write_text(text.replace('"class_0, class_1, class_2"', '"red, white, rose"'))
    with pytest.raises(ValueError, match=r"parameter class_names is \['red', 'white', 'rose'\]; the dataset"):
        train.build("wine_sklearn", repo, tmp_path / "out")
    config.write_text(text.replace("dims: [ 13 ]", "dims: [ 12 ]"))
    with pytest.raises(ValueError, match="tensors"):
        train.build("wine_sklearn", repo, tmp_path / "out")
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_probe_rows_are_real_rows_with_their_true_class() -> None:
    for model, (row, expected) in PROBE_ROWS.items():
        t = train.train(model)
        values = [row[n] for n in t.feature_names] if isinstance(row, dict) else row
        matches = np.flatnonzero((t.features == np.float32(values)).all(axis=1))
        assert len(matches) == 1, model
        assert t.class_names[t.target[matches[0]]] == expected


def test_recipes_cover_both_models_and_their_requirements_are_pinned() -> None:
    tabular = pipelines.get("tabular")
    assert {m for r in tabular.recipes for m in r.models} == set(client.MODELS) == set(tabular.public)
    assert all("==" in r for r in tabular.build_requires)
    assert "xgboost-cpu==3.2.0" in pipelines.requirements(("build",))


SCHEMA = client.Schema("m", ("a", "b c", "d"), ("no", "yes"), 8)


def test_schema_reads_names_from_a_config_as_either_protocol_returns_it() -> None:
    params = {"feature_names": {"string_value": " a, b c ,d "}, "class_names": {"string_value": "no,yes"}}
    http = {"name": "m", "max_batch_size": 8, "parameters": params}
    grpc = {"config": {**http, "max_batch_size": 8}}
    assert client.Schema.from_config("m", http) == SCHEMA
    assert client.Schema.from_config("m", grpc["config"]) == SCHEMA


def test_schema_orders_mappings_and_takes_arrays() -> None:
    rows = [{"d": 3, "a": 1, "b c": "2.5"}, [4, 5, 6]]
    np.testing.assert_array_equal(SCHEMA.matrix(rows), [[1, 2.5, 3], [4, 5, 6]])
    np.testing.assert_array_equal(SCHEMA.matrix(np.arange(6).reshape(2, 3)), [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(SCHEMA.matrix({"a": 1, "b c": 2, "d": 3}), [[1, 2, 3]])


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        ([[1, 2]], "m takes 3 features per row (a, b c, d); row 0 has 2"),
        (
            [{"a": 1, "bc": 2, "d": 3}],
            "row 0 has unknown feature(s) 'bc' (did you mean 'b c'?); missing feature(s) 'b c'",
        ),
        ([{"a": 1, "d": 3}], "row 0 has missing feature(s) 'b c' (it takes a, b c, d)"),
        ([[1, None, 3]], "row 0, feature 'b c': None is not a number"),
        (["1,2,3"], "row 0 is '1,2,3'"),
        (np.zeros(3), "rows must be 2-D (rows x 3 features), not shape [3]; for one row pass [row]"),
        ([], "m: no rows to predict"),
    ],
)
def test_schema_says_what_is_wrong(rows: Any, words: str) -> None:
    with pytest.raises(ValueError) as err:
        SCHEMA.matrix(rows)
    assert words in str(err.value)


def test_infer_row_formats() -> None:
    assert parse_row("1, 2.5,3") == ["1", "2.5", "3"]
    assert parse_row("mean radius=1,b=2") == {"mean radius": "1", "b": "2"}
    with pytest.raises(ValueError, match="name=value, or none"):
        parse_row("a=1,2")
    assert read_rows("a,b c\n1,2\n3,4\n") == [{"a": "1", "b c": "2"}, {"a": "3", "b c": "4"}]
    assert read_rows("1,2\n3,4\n") == [["1", "2"], ["3", "4"]]
    assert read_rows('[{"a": 1}, [2]]') == [{"a": 1}, [2]]
    assert read_rows('{"a": 1}\n{"a": 2}\n', "rows.jsonl") == [{"a": 1}, {"a": 2}]
    assert read_rows('{"a": 1}') == [{"a": 1}]


# --- the onnxruntime backend: one failing request of a batch fails alone --------------------------------


class _Error(Exception):
    INTERNAL, INVALID_ARG = 13, 3

    def __init__(self, message: str, code: int = 13) -> None:
        super().__init__(message)
        self.code = code


def _fake_pb_utils() -> types.ModuleType:
    """Just what tritonfleet/backends/onnxruntime/model.py uses of triton_python_backend_utils."""
    pb = types.ModuleType("triton_python_backend_utils")
    pb.TritonError = _Error
    pb.Tensor = lambda name, array: (name, array)
    pb.InferenceResponse = lambda tensors=None, error=None: types.SimpleNamespace(
        tensors=tensors, error=error
    )
    pb.get_input_tensor_by_name = lambda request, name: types.SimpleNamespace(as_numpy=lambda: request[name])
    pb.triton_string_to_numpy = {"TYPE_INT64": np.int64, "TYPE_FP32": np.float32}.__getitem__
    return pb


@pytest.fixture
def gather_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The backend serving a real ONNX graph, VALUES[INDEX] + OFFSET: an index out of range is onnxruntime's
    INVALID_ARGUMENT; an OFFSET row that does not broadcast is its FAIL."""
    values = helper.make_tensor("values", TensorProto.FLOAT, [4], [10, 20, 30, 40])
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["values", "INDEX"], ["g"]),
            helper.make_node("Add", ["g", "OFFSET"], ["OUT"]),
        ],
        "gather",
        [
            helper.make_tensor_value_info("INDEX", TensorProto.INT64, [None, 1]),
            helper.make_tensor_value_info("OFFSET", TensorProto.FLOAT, [None, None]),
        ],
        [helper.make_tensor_value_info("OUT", TensorProto.FLOAT, [None, None])],
        [values],
    )
    version = tmp_path / "1"
    version.mkdir()
    (version / "model.onnx").write_bytes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]).SerializeToString()
    )
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    source = BACKENDS_SOURCE / "onnxruntime" / "model.py"  # what make_backends_dir gives the server
    spec = importlib.util.spec_from_file_location("ort_backend_under_test", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = {
        "max_batch_size": 8,
        "input": [{"name": "INDEX", "data_type": "TYPE_INT64"}, {"name": "OFFSET", "data_type": "TYPE_FP32"}],
        "output": [{"name": "OUT", "data_type": "TYPE_FP32"}],
        "parameters": {"reject_non_finite": {"string_value": "true"}},
    }
    model = module.TritonPythonModel()
    model.initialize(
        {"model_config": json.dumps(config), "model_repository": str(tmp_path), "model_version": "1"}
    )
    return model


def _request(index: int, offset: list[float]) -> dict[str, np.ndarray]:
    return {"INDEX": np.array([[index]], np.int64), "OFFSET": np.array([offset], np.float32)}


def _outputs(responses: list[Any]) -> list[Any]:
    """Each response's OUT as a list, or its error's code."""
    return [r.tensors[0][1].tolist() if r.error is None else r.error.code for r in responses]


def test_backend_runs_a_clean_batch_once(gather_model: Any) -> None:
    runs = []
    run = gather_model.session.run
    gather_model.session = types.SimpleNamespace(run=lambda *a: runs.append(1) or run(*a))
    responses = gather_model.execute([_request(i, [float(i)]) for i in range(4)])
    assert _outputs(responses) == [[[10.0]], [[21.0]], [[32.0]], [[43.0]]]
    assert len(runs) == 1


def test_backend_fails_only_the_bad_requests_of_a_batch(gather_model: Any) -> None:
    # An index out of range fails the batch's run (onnxruntime's INVALID_ARGUMENT): each runs alone.
    responses = gather_model.execute([_request(1, [0.5]), _request(9, [0.0]), _request(0, [0.25])])
    assert _outputs(responses) == [[[20.5]], _Error.INVALID_ARG, [[10.25]]]
    assert str(responses[1].error).startswith("onnxruntime: ") and "out of data bounds" in str(
        responses[1].error
    )
    # NaN fails the batch's check.
    responses = gather_model.execute(
        [_request(1, [0.5]), _request(2, [float("nan")]), _request(3, [-np.inf])]
    )
    assert _outputs(responses) == [[[20.5]], _Error.INVALID_ARG, _Error.INVALID_ARG]
    assert str(responses[1].error) == (
        "OFFSET: non-finite value nan at index [0, 0]; this model accepts finite numbers only"
    )
    # Requests whose shapes do not concatenate each run alone, and both succeed.
    responses = gather_model.execute([_request(1, [0.5]), _request(3, [1.0, 2.0])])
    assert _outputs(responses) == [[[20.5]], [[41.0, 42.0]]]


def test_backend_answers_an_onnxruntime_fault_with_a_500(gather_model: Any) -> None:
    # Two gathered rows plus three rows of offsets do not broadcast: onnxruntime's FAIL, not a client error
    # it can name.
    bad = {"INDEX": np.array([[1], [2]], np.int64), "OFFSET": np.ones((3, 2), np.float32)}
    responses = gather_model.execute([bad, _request(0, [1.0])])
    assert _outputs(responses) == [_Error.INTERNAL, [[11.0]]]
    assert str(responses[0].error).startswith("onnxruntime: ")
