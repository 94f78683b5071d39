"""breast_cancer_xgboost: an XGBoost classifier on scikit-learn's breast cancer data."""

from __future__ import annotations

from typing import Any

from tritonfleet.pipelines.tabular import convert
from tritonfleet.pipelines.tabular.models import TabularModel

SEED = 0


def dataset() -> Any:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer()


def fit(x: Any, y: Any) -> Any:
    import xgboost

    model = xgboost.XGBClassifier(
        n_estimators=100, max_depth=3, learning_rate=0.1, random_state=SEED, n_jobs=1, tree_method="hist"
    )
    return model.fit(x, y)


# Row 19 of the dataset, values in feature order (its class: benign): the probe's request.
ROW_19 = [13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766, 0.2699, 0.7886,
          2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01315, 0.0198, 0.0023, 15.11, 19.26, 99.7, 711.2,
          0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259]  # fmt: skip

MODEL = TabularModel(
    name="breast_cancer_xgboost",
    features=(
        "mean radius",
        "mean texture",
        "mean perimeter",
        "mean area",
        "mean smoothness",
        "mean compactness",
        "mean concavity",
        "mean concave points",
        "mean symmetry",
        "mean fractal dimension",
        "radius error",
        "texture error",
        "perimeter error",
        "area error",
        "smoothness error",
        "compactness error",
        "concavity error",
        "concave points error",
        "symmetry error",
        "fractal dimension error",
        "worst radius",
        "worst texture",
        "worst perimeter",
        "worst area",
        "worst smoothness",
        "worst compactness",
        "worst concavity",
        "worst concave points",
        "worst symmetry",
        "worst fractal dimension",
    ),
    classes=("malignant", "benign"),
    dataset=dataset,
    fit=fit,
    convert=convert.xgboost,
    probe=(ROW_19, "benign"),
    doc="""An XGBoost tree ensemble in ONNX (ai.onnx.ml TreeEnsembleClassifier) trained on scikit-learn's
    breast cancer data. XGBoost itself would read NaN as a missing value, but this model was trained on
    complete rows.""",
)
