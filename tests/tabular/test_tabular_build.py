"""The tabular pipeline without a server: the build (deterministic, checked against the configs), the
client's row handling, ``fleet infer``'s row formats, and the onnxruntime backend's per-request errors."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.build_scripts import load
from tests.conftest import copy_repository
from tests.fake_pb_utils import TritonError
from tests.python_models import ONNXRUNTIME_BACKEND, PythonModel
from tests.python_models import load as load_model
from tritonfleet import artifacts, pipelines
from tritonfleet.artifacts import REPOSITORY
from tritonfleet.clients import tabular as client
from tritonfleet.pipelines.tabular import models
from tritonfleet.pipelines.tabular.commands import parse_row, read_rows

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
    for model in models.discover().values():
        (row, expected), t = model.probe, train.train(model.name)
        values = [row[n] for n in t.feature_names] if isinstance(row, dict) else row
        matches = np.flatnonzero((t.features == np.float32(values)).all(axis=1))
        assert len(matches) == 1, model.name
        assert t.class_names[t.target[matches[0]]] == expected


def test_each_model_is_one_module_that_every_part_reads() -> None:
    """The interface, the client's choices, the recipes and the probe come from tabular/models/*.py."""
    from tritonfleet.pipelines.tabular import interface

    names = list(models.discover())
    assert names == ["breast_cancer_xgboost", "wine_sklearn"]
    assert [m.name for m in interface.MODELS] == names == list(client.MODELS)
    wine = models.get("wine_sklearn")
    assert wine.source == "tritonfleet/pipelines/tabular/models/wine_sklearn.py"
    (recipe,) = [r for r in pipelines.get("tabular").recipes if r.models == ("wine_sklearn",)]
    assert wine.source in recipe.sources
    declared = interface.MODELS[names.index("wine_sklearn")]
    assert client.split_names(declared.parameters["feature_names"]) == wine.features
    with pytest.raises(KeyError, match="no tabular model 'iris'"):
        models.get("iris")


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


# --- the onnxruntime backend (tests/python_models.py): one failing request of a batch fails alone ---------


def _serve(repository: Path, name: str, nodes: list[Any], initializer: Any) -> PythonModel:
    """The backend serving a real ONNX graph: INDEX (INT64 [1]) and OFFSET (FP32 [-1]) in, OUT out."""
    graph = helper.make_graph(
        nodes,
        name,
        [
            helper.make_tensor_value_info("INDEX", TensorProto.INT64, [None, 1]),
            helper.make_tensor_value_info("OFFSET", TensorProto.FLOAT, [None, None]),
        ],
        [helper.make_tensor_value_info("OUT", TensorProto.FLOAT, [None, None])],
        [initializer],
    )
    folder = repository / name
    (folder / "1").mkdir(parents=True)
    (folder / "config.pbtxt").write_text(f"""
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {{ name: "INDEX", data_type: TYPE_INT64, dims: [ 1 ] }},
  {{ name: "OFFSET", data_type: TYPE_FP32, dims: [ -1 ] }}
]
output [ {{ name: "OUT", data_type: TYPE_FP32, dims: [ -1 ] }} ]
parameters {{ key: "reject_non_finite", value: {{ string_value: "true" }} }}
""")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    (folder / "1" / "model.onnx").write_bytes(model.SerializeToString())
    return load_model(name, model_file=ONNXRUNTIME_BACKEND, repository=repository)


@pytest.fixture
def gather(tmp_path: Path) -> PythonModel:
    """OUT = VALUES[INDEX] + OFFSET: an index out of range is onnxruntime's INVALID_ARGUMENT."""
    values = helper.make_tensor("values", TensorProto.FLOAT, [4], [10, 20, 30, 40])
    nodes = [
        helper.make_node("Gather", ["values", "INDEX"], ["g"]),
        helper.make_node("Add", ["g", "OFFSET"], ["OUT"]),
    ]
    return _serve(tmp_path, "gather", nodes, values)


def _request(model: PythonModel, index: int, offset: list[float]) -> Any:
    return model.request({"INDEX": [[index]], "OFFSET": [offset]})


def _outputs(answers: list[Any]) -> list[Any]:
    """Each answer's OUT as a list, or its error's code."""
    return [a.error.code() if a.error else a.outputs["OUT"].tolist() for a in answers]


def test_backend_runs_a_clean_batch_once(gather: PythonModel) -> None:
    runs = []
    session = gather.instance.session
    gather.instance.session = types.SimpleNamespace(run=lambda *a: runs.append(1) or session.run(*a))
    answers = gather.execute([_request(gather, i, [float(i)]) for i in range(4)])
    assert _outputs(answers) == [[[10.0]], [[21.0]], [[32.0]], [[43.0]]]
    assert len(runs) == 1


def test_backend_fails_only_the_bad_requests_of_a_batch(gather: PythonModel) -> None:
    # An index out of range fails the batch's run (onnxruntime's INVALID_ARGUMENT): each runs alone.
    answers = gather.execute(
        [_request(gather, 1, [0.5]), _request(gather, 9, [0.0]), _request(gather, 0, [0.25])]
    )
    assert _outputs(answers) == [[[20.5]], TritonError.INVALID_ARG, [[10.25]]]
    message = answers[1].error.message()
    assert message.startswith("onnxruntime: ") and "out of data bounds" in message
    # NaN and infinity fail the batch's check.
    nan, inf = float("nan"), float("-inf")
    answers = gather.execute(
        [_request(gather, 1, [0.5]), _request(gather, 2, [nan]), _request(gather, 3, [inf])]
    )
    assert _outputs(answers) == [[[20.5]], TritonError.INVALID_ARG, TritonError.INVALID_ARG]
    assert answers[1].error.message() == (
        "OFFSET: non-finite value nan at index [0, 0]; this model accepts finite numbers only"
    )
    # Requests whose shapes do not concatenate each run alone, and both succeed.
    answers = gather.execute([_request(gather, 1, [0.5]), _request(gather, 3, [1.0, 2.0])])
    assert _outputs(answers) == [[[20.5]], [[41.0, 42.0]]]


def test_backend_answers_other_onnxruntime_errors_with_a_500(tmp_path: Path) -> None:
    """OUT = OFFSET + [0, 0, 0]: two offsets do not broadcast with three, onnxruntime's FAIL. This backend
    reads only INVALID_ARGUMENT as the client's mistake; any other error is a 500 for that request alone."""
    zeros = helper.make_tensor("zeros", TensorProto.FLOAT, [3], [0, 0, 0])
    model = _serve(tmp_path, "broadcast", [helper.make_node("Add", ["OFFSET", "zeros"], ["OUT"])], zeros)
    answers = model.execute([_request(model, 0, [1.0, 2.0]), _request(model, 0, [1.0, 2.0, 3.0])])
    assert _outputs(answers) == [TritonError.INTERNAL, [[1.0, 2.0, 3.0]]]
    assert answers[0].error.message().startswith("onnxruntime: ")


@pytest.mark.parametrize("model", client.MODELS)
def test_served_model_code_answers_rows_of_a_mixed_batch_as_the_trained_model(model: str) -> None:
    """The repository's model and config in the backend, in process: a dynamic batch of good rows and rows
    with NaN; the good ones get the trained model's answers."""
    served = load_model(model, model_file=ONNXRUNTIME_BACKEND)
    t = train.train(model)
    rows = t.features[:6].copy()
    rows[[1, 4], 0] = np.nan
    answers = served.execute([served.request({client.INPUT: rows[i : i + 1]}) for i in range(len(rows))])
    for i, answer in enumerate(answers):
        if i in (1, 4):
            assert answer.error.code() == TritonError.INVALID_ARG
            continue
        np.testing.assert_array_equal(
            answer.outputs[client.LABEL], t.estimator.predict(rows[i : i + 1])[:, None]
        )
        np.testing.assert_allclose(
            answer.outputs[client.PROBABILITIES], t.estimator.predict_proba(rows[i : i + 1]), atol=1e-5
        )
