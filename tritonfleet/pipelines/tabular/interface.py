"""The tabular pipeline's models: classic-ML classifiers in ONNX, one row of features in, a class and its
probabilities out. Each is declared by :func:`classifier`; clients read the feature and class names from the
served config (``clients/tabular.py``), and the build checks the trained model against them.
"""

from collections.abc import Sequence

from tritonfleet.spec import Batching, Deployment, Model, Tensor

FEATURES = "FEATURES"  # FP32 [n_features], in feature_names order
LABEL = "LABEL"  # INT64 [1], the class index in class_names order
PROBABILITIES = "PROBABILITIES"  # FP32 [n_classes]
FEATURE_NAMES, CLASS_NAMES = "feature_names", "class_names"  # the interface's parameters, comma-separated

_SERVED = Deployment(
    platform="onnxruntime_onnx",
    batching=Batching.interactive_first(max_queue_delay_us=0),
    parameters={
        "intra_op_thread_count": "1",
        "reject_non_finite": "true",  # NaN or infinity: a 400 (the Python-based backend's check)
    },
)

_DOC = """One config for both targets: onnxruntime runs these graphs on the CPU only (TensorRT cannot), so
both serve them KIND_CPU, on the native onnxruntime backend where an image has one and on tritonfleet's
Python-based one (tritonfleet/backends/onnxruntime) where it has none. NaN or infinity in FEATURES is a 400
for that request. feature_names and class_names are the model's interface beyond tensors, in FEATURES and
LABEL order: the build checks the trained model against them, clients read them from the server's config.
Batching settings measured: docs/tabular.md."""


def classifier(name: str, features: Sequence[str], classes: Sequence[str], doc: str) -> Model:
    """A classifier of rows of ``features`` into ``classes``, served by onnxruntime on the CPU cores."""
    return Model(
        name=name,
        inputs=(Tensor(FEATURES, "FP32", [len(features)]),),
        outputs=(Tensor(LABEL, "INT64", [1]), Tensor(PROBABILITIES, "FP32", [len(classes)])),
        max_batch_size=1024,
        gpu=_SERVED,
        parameters={FEATURE_NAMES: ", ".join(features), CLASS_NAMES: ", ".join(classes)},
        doc=f"{doc}\n\n{_DOC}",
    )


BREAST_CANCER_XGBOOST = classifier(
    "breast_cancer_xgboost",
    (
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
    ("malignant", "benign"),
    """An XGBoost tree ensemble in ONNX (ai.onnx.ml TreeEnsembleClassifier) trained on scikit-learn's breast
    cancer data. XGBoost itself would read NaN as a missing value, but this model was trained on complete
    rows.""",
)

WINE_SKLEARN = classifier(
    "wine_sklearn",
    (
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
    ("class_0", "class_1", "class_2"),
    """scikit-learn's StandardScaler + LogisticRegression in ONNX (ai.onnx.ml Scaler, LinearClassifier)
    trained on the wine data.""",
)

MODELS = (BREAST_CANCER_XGBOOST, WINE_SKLEARN)
