"""tabular: classic-ML classifiers in ONNX, one row of features in, a class and its probabilities out.

Each classifier is a module of ``models/`` (``breast_cancer_xgboost``: XGBoost on scikit-learn's breast
cancer data; ``wine_sklearn``: a StandardScaler + LogisticRegression pipeline on the wine data), trained at
build time by ``build/tabular/train.py`` and served by the onnxruntime backend with dynamic batching. Feature
and class names are in each model's config (``clients/tabular.py`` reads them from the server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tritonfleet.artifacts import Recipe
from tritonfleet.clients import tabular as client
from tritonfleet.pipelines import Pipeline, Playground, Slo
from tritonfleet.pipelines.tabular import commands, models

if TYPE_CHECKING:
    from tritonfleet.clients import FleetClient

BUILD_PACKAGES = ("scikit-learn", "xgboost-cpu", "skl2onnx", "onnxmltools", "onnx", "onnxruntime", "numpy")
SHARED_SOURCES = (
    "clients/tabular.py",
    "tritonfleet/pipelines/tabular/models/__init__.py",
    "tritonfleet/pipelines/tabular/convert.py",
)


def _probe(fleet: FleetClient) -> None:
    """A real row of each model's dataset gets its true class, with probabilities that sum to one."""
    for model in models.discover().values():
        row, expected = model.probe
        result = fleet.predict_tabular(model.name, [row])
        assert result.class_names == [expected], (model.name, result)
        assert abs(float(result.probabilities.sum()) - 1) < 1e-4, (model.name, result)


def _recipe(model: models.TabularModel) -> Recipe:
    """``build/tabular/train.py`` for one model: trains, converts and checks it against its config."""
    output = f"{{output}}/{model.name}/1"
    return Recipe(
        script="build/tabular/train.py",
        outputs=(f"{model.name}/1/model.onnx", f"{model.name}/1/training.json"),
        args=("--model", model.name, "--repository", "{repository}", "--output", output),
        sources=(f"model_repository/{model.name}/config.pbtxt", model.source, *SHARED_SOURCES),
        packages=BUILD_PACKAGES,
    )


PIPELINE = Pipeline(
    name="tabular",
    summary="classic ML in ONNX: XGBoost (breast cancer) and scikit-learn (wine) classifiers",
    public=client.MODELS,
    recipes=tuple(map(_recipe, models.discover().values())),
    infer=commands.INFER,
    bench=commands.BENCH,
    probe=_probe,
    # The onnxruntime backend's runtime where tritonfleet is installed without its dependencies (the GPU
    # image, whose Python 3.10 gets onnxruntime 1.23 at most).
    requires=("onnxruntime",),
    build_requires=("scikit-learn==1.9.1", "xgboost-cpu==3.2.0", "skl2onnx==1.20.0", "onnxmltools==1.16.0"),
    slo=Slo(p99_seconds=0.1),
    playground=Playground(
        "tabular",
        params={
            "input": client.INPUT,
            "output": client.PROBABILITIES,
            "label": client.LABEL,
            "features": client.FEATURE_NAMES,  # config parameters: comma-separated names
            "classes": client.CLASS_NAMES,
            "examples": {m.name: m.probe[0] for m in models.discover().values()},  # a real row each
        },
    ),
)
