"""The tabular pipeline's models: classic-ML classifiers in ONNX, one row of features in, a class and its
probabilities out. Each is a module of :mod:`.models` (its names, dataset, estimator, converter), declared
here by :func:`classifier`; clients read the feature and class names from the served config
(``clients/tabular.py``), and the build checks the trained model against them.
"""

from collections.abc import Sequence

from tritonfleet.pipelines.tabular import models
from tritonfleet.spec import Batching, Deployment, Model, Tensor

FEATURES = "FEATURES"  # FP32 [n_features], in feature_names order
LABEL = "LABEL"  # INT64 [1], the class index in class_names order
PROBABILITIES = "PROBABILITIES"  # FP32 [n_classes]
FEATURE_NAMES, CLASS_NAMES = "feature_names", "class_names"  # the interface's parameters, comma-separated

_SERVED = Deployment(
    platform="onnxruntime_onnx",
    instances=2,
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


MODELS = tuple(classifier(m.name, m.features, m.classes, m.doc) for m in models.discover().values())
