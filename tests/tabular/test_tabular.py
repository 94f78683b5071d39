"""The tabular classifiers on a real tritonserver: parity with the trained scikit-learn / XGBoost models on
every row of their datasets, both protocols, rows as dicts and arrays, and bad input (wrong feature counts,
names and dtypes; NaN and infinity mixed into the same dynamic batches as good rows)."""

from __future__ import annotations

import asyncio
import json
import random
from functools import cache

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.build_scripts import load
from tritonfleet import cli
from tritonfleet.clients import AsyncFleetClient, FleetClient
from tritonfleet.clients import tabular as client
from tritonfleet.server import TritonServer

PROTOCOLS = ["http", "grpc"]
TOLERANCE = 1e-5


@cache
def trained(model: str):
    """The model as the build trains it (deterministic), in this process."""
    return load("build/tabular/train.py").train(model)


def url(server: TritonServer, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


def assert_matches_trained(model: str, rows: np.ndarray, result: client.Predictions) -> None:
    estimator = trained(model).estimator
    np.testing.assert_array_equal(result.labels, estimator.predict(rows))
    np.testing.assert_allclose(result.probabilities, estimator.predict_proba(rows), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", client.MODELS)
def test_served_predictions_equal_the_trained_model_on_every_row(
    server: TritonServer, model: str, protocol: str
) -> None:
    rows = trained(model).features
    with FleetClient(url(server, protocol), protocol=protocol) as fleet:
        result = fleet.predict_tabular(model, rows)
    assert len(result) == len(rows) == {"breast_cancer_xgboost": 569, "wine_sklearn": 178}[model]
    assert_matches_trained(model, rows, result)
    # The models are good ones, not just faithful ones.
    assert (result.labels == trained(model).target).mean() > 0.95


def test_class_and_feature_names_come_from_the_server_config(server: TritonServer) -> None:
    for model in client.MODELS:
        t = trained(model)
        with FleetClient(server.grpc_url, protocol="grpc") as fleet:
            schema = client.Schema.from_config(model, fleet.model_config(model))
            result = fleet.predict_tabular(model, t.features[:20])
        assert schema.features == t.feature_names
        assert schema.classes == result.classes == t.class_names
        assert result.class_names == [t.class_names[i] for i in t.estimator.predict(t.features[:20])]


def test_dict_rows_in_any_key_order_equal_array_rows(server: TritonServer) -> None:
    model = "wine_sklearn"
    t = trained(model)
    shuffled = random.Random(0)
    dicts = []
    for row in t.features:
        pairs = list(zip(t.feature_names, row.tolist(), strict=True))
        shuffled.shuffle(pairs)
        dicts.append(dict(pairs))
    with FleetClient(server.http_url) as fleet:
        from_dicts = fleet.predict_tabular(model, dicts)
        one = fleet.predict_tabular(model, dicts[0])  # a single mapping is one row
    assert_matches_trained(model, t.features, from_dicts)
    assert one.labels.tolist() == from_dicts.labels[:1].tolist()


def test_asyncio_client_reads_the_config_too(server: TritonServer) -> None:
    async def both() -> list[client.Predictions]:
        async with AsyncFleetClient(server.grpc_url, protocol="grpc") as fleet:
            return await asyncio.gather(
                *(fleet.predict_tabular(m, trained(m).features[:50]) for m in client.MODELS)
            )

    for model, result in zip(client.MODELS, asyncio.run(both()), strict=True):
        assert_matches_trained(model, trained(model).features[:50], result)
        assert result.classes == trained(model).class_names


def test_wrong_rows_are_refused_by_the_helper_with_what_is_wrong(server: TritonServer) -> None:
    t = trained("wine_sklearn")
    row = dict(zip(t.feature_names, t.features[0].tolist(), strict=True))
    with FleetClient(server.http_url) as fleet:
        cases = {
            "takes 13 features per row (alcohol, malic_acid": [t.features[0][:12].tolist()],
            "row 1 has 14": [t.features[0].tolist(), [*t.features[0].tolist(), 1.0]],
            "unknown feature(s) 'alcohl' (did you mean 'alcohol'?); missing feature(s) 'alcohol'": [
                {("alcohl" if k == "alcohol" else k): v for k, v in row.items()}
            ],
            "row 0 has missing feature(s) 'proline'": [{k: v for k, v in row.items() if k != "proline"}],
            "feature 'hue': 'high' is not a number": [{**row, "hue": "high"}],
            "rows must be 2-D": t.features[0],
            "no rows": [],
        }
        for words, rows in cases.items():
            with pytest.raises(ValueError) as err:
                fleet.predict_tabular("wine_sklearn", rows)
            assert words in str(err.value), (words, str(err.value))
            assert "wine_sklearn" in str(err.value)
        with pytest.raises(ValueError, match="image_classifier is not a tabular model"):
            fleet.predict_tabular("image_classifier", [[1.0]])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_feature_count_and_dtype_are_triton_400s(server: TritonServer, protocol: str) -> None:
    api = httpclient if protocol == "http" else grpcclient
    triton = api.InferenceServerClient(url(server, protocol))
    short = api.InferInput("FEATURES", [1, 12], "FP32")
    short.set_data_from_numpy(np.ones((1, 12), np.float32))
    with pytest.raises(InferenceServerException) as err:
        triton.infer("wine_sklearn", [short])
    assert (
        r"unexpected shape for input 'FEATURES' for model 'wine_sklearn'. Expected [-1,13], got [1,12]"
        in str(err.value)
    )
    assert err.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    doubles = api.InferInput("FEATURES", [1, 13], "FP64")
    doubles.set_data_from_numpy(np.ones((1, 13), np.float64))
    with pytest.raises(InferenceServerException) as err:
        triton.infer("wine_sklearn", [doubles])
    assert "data-type is 'FP64', but model 'wine_sklearn' expects 'FP32'" in str(err.value)
    assert err.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    triton.close()


def _stats(triton: grpcclient.InferenceServerClient, model: str) -> tuple[int, int]:
    stats = triton.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


@pytest.mark.parametrize("model", client.MODELS)
def test_non_finite_rows_fail_alone_in_a_mixed_batch(server: TritonServer, model: str) -> None:
    """Good rows and rows holding NaN or +-infinity arrive together, land in the same dynamic batches, and
    each gets its own answer: the bad ones a 400 naming the tensor, the good ones the trained model's."""
    rows = trained(model).features
    requests = []
    for i in range(60):
        row = rows[i % len(rows)].copy()
        if i % 3:
            row[i % len(row)] = [np.nan, np.inf, -np.inf][i % 3 if i % 2 else 0]
        requests.append(row)
    stubs_before = server.stub_pids()
    sync = grpcclient.InferenceServerClient(server.grpc_url)
    inferences_before, executions_before = _stats(sync, model)

    async def send_all() -> list[object]:
        async with AsyncFleetClient(server.grpc_url, protocol="grpc") as fleet:
            await fleet.model_config(model)
            return await asyncio.gather(
                *(fleet.predict_tabular(model, [row]) for row in requests), return_exceptions=True
            )

    results = asyncio.run(send_all())
    for i, (row, result) in enumerate(zip(requests, results, strict=True)):
        if i % 3:
            assert isinstance(result, InferenceServerException), (i, result)
            assert result.status() == "StatusCode.INVALID_ARGUMENT", result
            assert "FEATURES: non-finite value" in str(result) and "finite numbers only" in str(result)
        else:
            assert not isinstance(result, BaseException), (i, result)
            assert_matches_trained(model, row[None], result)
    inferences, executions = _stats(sync, model)
    assert inferences - inferences_before == len(requests)
    assert executions - executions_before < len(requests), "requests were never batched together"
    assert sync.is_model_ready(model)
    sync.close()
    assert server.stub_pids() == stubs_before, "a stub process died or was restarted"


def test_non_finite_over_http_is_a_400(server: TritonServer) -> None:
    row = trained("breast_cancer_xgboost").features[:2].copy()
    row[1, 3] = np.nan
    with FleetClient(server.http_url) as fleet, pytest.raises(InferenceServerException) as err:
        fleet.predict_tabular("breast_cancer_xgboost", row)
    assert err.value.status() == "400"
    assert "FEATURES: non-finite value nan at index [1, 3]" in str(err.value)


def test_fleet_infer_reads_a_csv_file(server: TritonServer, tmp_path, capsys) -> None:
    t = trained("breast_cancer_xgboost")
    csv = tmp_path / "rows.csv"
    lines = [",".join(t.feature_names)] + [",".join(map(repr, r.tolist())) for r in t.features[:40]]
    csv.write_text("\n".join(lines) + "\n")
    argv = ["infer", "tabular", "--url", server.http_url, "--model", "breast_cancer_xgboost"]
    assert cli.main([*argv, "--file", str(csv), "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = t.estimator.predict(t.features[:40])
    assert [p["label"] for p in printed] == expected.tolist()
    assert [p["class"] for p in printed] == [t.class_names[i] for i in expected]
    assert cli.main([*argv, ",".join(["1.0"] * 29)]) == 2
    assert "takes 30 features per row" in capsys.readouterr().out
