"""tabular: classic-ML classifiers in ONNX, one row of features in, a class and its probabilities out.

``breast_cancer_xgboost`` (XGBoost on scikit-learn's breast cancer data) and ``wine_sklearn`` (a
scikit-learn StandardScaler + LogisticRegression pipeline on the wine data), trained at build time by
``build/tabular/train.py`` and served by the onnxruntime backend with dynamic batching. Feature and class
names live in each model's config (``clients/tabular.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tritonfleet.artifacts import Recipe
from tritonfleet.clients import tabular as client
from tritonfleet.pipelines import Pipeline, Slo
from tritonfleet.pipelines.tabular import commands

if TYPE_CHECKING:
    from tritonfleet.clients import FleetClient

BUILD_PACKAGES = ("scikit-learn", "xgboost-cpu", "skl2onnx", "onnxmltools", "onnx", "onnxruntime", "numpy")

# Real rows of the datasets and their true classes (wine row 0, breast cancer row 19): the probe's requests.
PROBE_ROWS: dict[str, tuple[dict[str, float] | list[float], str]] = {
    "wine_sklearn": (
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
    "breast_cancer_xgboost": (
        [13.54, 14.36, 87.46, 566.3, 0.09779, 0.08129, 0.06664, 0.04781, 0.1885, 0.05766, 0.2699, 0.7886,
         2.058, 23.56, 0.008462, 0.0146, 0.02387, 0.01315, 0.0198, 0.0023, 15.11, 19.26, 99.7, 711.2,
         0.144, 0.1773, 0.239, 0.1288, 0.2977, 0.07259],
        "benign",
    ),
}  # fmt: skip


def _probe(fleet: FleetClient) -> None:
    """A real row of each dataset gets its true class, with probabilities that sum to one."""
    for model, (row, expected) in PROBE_ROWS.items():
        result = fleet.predict_tabular(model, [row])
        assert result.class_names == [expected], (model, result)
        assert abs(float(result.probabilities.sum()) - 1) < 1e-4, (model, result)


PIPELINE = Pipeline(
    name="tabular",
    summary="classic ML in ONNX: XGBoost (breast cancer) and scikit-learn (wine) classifiers",
    public=client.MODELS,
    recipes=tuple(
        Recipe(
            script="build/tabular/train.py",
            outputs=(f"{model}/1/model.onnx", f"{model}/1/training.json"),
            args=("--model", model, "--repository", "{repository}", "--output", f"{{output}}/{model}/1"),
            sources=(f"model_repository/{model}/config.pbtxt", "clients/tabular.py"),
            packages=BUILD_PACKAGES,
        )
        for model in client.MODELS
    ),
    infer=commands.INFER,
    bench=commands.BENCH,
    probe=_probe,
    # The onnxruntime backend's runtime where tritonfleet is installed without its dependencies (the GPU
    # image, whose Python 3.10 gets onnxruntime 1.23 at most).
    requires=("onnxruntime",),
    build_requires=("scikit-learn==1.9.1", "xgboost-cpu==3.2.0", "skl2onnx==1.20.0", "onnxmltools==1.16.0"),
    slo=Slo(p99_seconds=0.1),
)
