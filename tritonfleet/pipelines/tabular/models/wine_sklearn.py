"""wine_sklearn: scikit-learn's StandardScaler + LogisticRegression on its wine data."""

from __future__ import annotations

from typing import Any

from tritonfleet.pipelines.tabular import convert
from tritonfleet.pipelines.tabular.models import TabularModel

SEED = 0


def dataset() -> Any:
    from sklearn.datasets import load_wine

    return load_wine()


def fit(x: Any, y: Any) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED)).fit(x, y)


MODEL = TabularModel(
    name="wine_sklearn",
    features=(
        "alcohol",
        "malic_acid",
        "ash",
        "alcalinity_of_ash",
        "magnesium",
        "total_phenols",
        "flavanoids",
        "nonflavanoid_phenols",
        "proanthocyanins",
        "color_intensity",
        "hue",
        "od280/od315_of_diluted_wines",
        "proline",
    ),
    classes=("class_0", "class_1", "class_2"),
    dataset=dataset,
    fit=fit,
    convert=convert.sklearn,
    # Row 0 of the dataset, by feature name, and its true class.
    probe=(
        {
            "alcohol": 14.23,
            "malic_acid": 1.71,
            "ash": 2.43,
            "alcalinity_of_ash": 15.6,
            "magnesium": 127.0,
            "total_phenols": 2.8,
            "flavanoids": 3.06,
            "nonflavanoid_phenols": 0.28,
            "proanthocyanins": 2.29,
            "color_intensity": 5.64,
            "hue": 1.04,
            "od280/od315_of_diluted_wines": 3.92,
            "proline": 1065.0,
        },
        "class_0",
    ),
    doc="""scikit-learn's StandardScaler + LogisticRegression in ONNX (ai.onnx.ml Scaler, LinearClassifier)
    trained on the wine data.""",
)
