"""The image_classifier pipeline's models: encoded image bytes in, ImageNet probabilities out.

``image_classifier`` (ensemble) = ``image_preprocess`` (Python: decode, resize, normalise) ->
``efficientnet_lite0`` (TensorRT on GPU, onnxruntime on CPU).
"""

from tritonfleet.spec import GPU, Batching, Deployment, Model, Step, Tensor, ensemble

LABELS = "labels.txt"  # the ImageNet class names, one per line, in the model folders

IMAGE = Tensor("IMAGE", "STRING", [1])  # the encoded bytes (JPEG, PNG, WebP, ...)
PIXEL_VALUES = Tensor("PIXEL_VALUES", "FP32", [3, 224, 224])
PIXELS_IN = Tensor("input", "FP32", [3, 224, 224])  # efficientnet_lite0's own names
PROBABILITIES_OUT = Tensor("probabilities", "FP32", [1000], label_filename=LABELS)
PROBABILITIES = Tensor("PROBABILITIES", "FP32", [1000], label_filename=LABELS)  # softmax; class_count: top-k

MAX_PIXELS = "max_pixels"  # image_preprocess's limit, checked from the header before decoding

_PREPROCESS_GPU = Deployment(backend="python", instances=4, parameters={MAX_PIXELS: "40000000"})

IMAGE_PREPROCESS = Model(
    name="image_preprocess",
    inputs=(IMAGE,),
    outputs=(PIXEL_VALUES,),
    max_batch_size=32,
    gpu=_PREPROCESS_GPU,
    cpu=_PREPROCESS_GPU.but(
        instances=2,
        doc="CPU config: config.pbtxt's with two instances (one per core), each decoding one "
        "request at a time.",
    ),
    doc="""Decodes encoded images (JPEG, PNG, ...) into EfficientNet-Lite0 input tensors. Runs on CPU cores
    beside the GPU model in production too. No dynamic batcher: Triton 24.10 passes a STRING input whose last
    element is cut short, and the Python backend then fails the whole dynamic batch it lands in (other
    clients' requests too) and cannot unload the model any more (tests/frontdoor/test_fuzz.py). Instances
    decode in parallel instead (efficientnet_lite0 still batches).""",
)

EFFICIENTNET_LITE0 = Model(
    name="efficientnet_lite0",
    inputs=(PIXELS_IN,),
    outputs=(PROBABILITIES_OUT,),
    max_batch_size=32,
    gpu=Deployment(
        platform="tensorrt_plan",
        kind=GPU,
        batching=Batching.interactive_first(preferred=(8, 16, 32), max_queue_delay_us=500),
        doc="GPU production config: a TensorRT plan built from model.onnx inside the NGC image "
        "(build/tensorrt_plan.py; fp16, optimization profile derived from this file).",
    ),
    cpu=Deployment(
        platform="onnxruntime_onnx",
        batching=Batching.interactive_first(max_queue_delay_us=0),
        parameters={"intra_op_thread_count": "2"},
        doc="CPU config: the same ONNX export served with onnxruntime.",
    ),
    doc="EfficientNet-Lite0, the pretrained ImageNet classifier (softmax probabilities).",
)

IMAGE_CLASSIFIER = Model(
    name="image_classifier",
    inputs=(IMAGE,),
    outputs=(PROBABILITIES,),
    max_batch_size=32,
    gpu=ensemble(
        Step(IMAGE_PREPROCESS, {IMAGE.name: IMAGE.name}, {PIXEL_VALUES.name: "pixel_values"}),
        Step(
            EFFICIENTNET_LITE0, {PIXELS_IN.name: "pixel_values"}, {PROBABILITIES_OUT.name: PROBABILITIES.name}
        ),
    ),
    doc="""Encoded image bytes in, ImageNet class probabilities out. Ask for top-k labels with Triton's
    classification extension (class_count), e.g. "0.93:285:Egyptian cat". The same wiring serves both
    targets.""",
)

MODELS = (IMAGE_PREPROCESS, EFFICIENTNET_LITE0, IMAGE_CLASSIFIER)
