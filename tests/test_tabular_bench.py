"""`fleet bench tabular --tune`: the settings' config overrides are really loaded. Never a speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.bench.tabular_tuning import Setting, run_tuning


@pytest.mark.server
def test_tuning_loads_each_setting_into_the_server(tmp_path: Path) -> None:
    settings = (Setting("base"), Setting("2 instances, delay 200 us", instances=2, max_queue_delay_us=200))
    run_tuning(
        REPOSITORY,
        models=["breast_cancer_xgboost"],
        concurrency=[2],
        rounds=1,
        measurement_ms=500,
        output=tmp_path,
        console=Console(quiet=True),
        settings=settings,
    )
    data = json.loads((tmp_path / "tabular_tuning.json").read_text())
    results = data["results"]["breast_cancer_xgboost"]
    assert set(results) == {"base", "2 instances, delay 200 us"}
    assert all(
        len(results[name]["2"]) == 1 and results[name]["2"][0]["requests_per_s"] > 0 for name in results
    )
    assert data["settings"][1]["instances"] == 2


def test_a_setting_read_back_from_a_config_is_the_setting() -> None:
    setting = Setting("x", instances=2, intra_op_threads=1, max_queue_delay_us=100, preferred=(8, 16))
    config = {"parameters": {"feature_names": {"string_value": "a"}}}
    assert Setting.of("x", setting.apply(config)) == setting
    assert config == {"parameters": {"feature_names": {"string_value": "a"}}}  # apply copies
