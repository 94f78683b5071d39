"""Each model's interface, declared once: tensors, data types, dims, batch size, optional inputs, decoupled,
the parameters clients read, and per target only what differs there (backend, instances, batching, engine
parameters, ensemble steps).

Each pipeline declares its models in ``tritonfleet/pipelines/<name>/interface.py`` (``MODELS``);
:func:`declared` finds them. Clients, the model code and the OpenAI app import the names they use from those
modules. :mod:`tritonfleet.spec.config` renders the declarations into the repository's ``config.pbtxt`` and
``configs/cpu.pbtxt`` (``fleet render``), which ``fleet validate`` holds to them. This package imports the
standard library only; the rendering needs protobuf and Triton's ``model_config_pb2``.
"""

from tritonfleet.spec.declare import (
    BF16,
    BOOL,
    CPU,
    DATA_TYPES,
    FP16,
    FP32,
    FP64,
    GPU,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    TARGETS,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    Batching,
    Deployment,
    Model,
    QueuePolicy,
    Step,
    Tensor,
    ensemble,
)
from tritonfleet.spec.registry import Declared, declared, model, models

__all__ = [
    "BF16",
    "BOOL",
    "CPU",
    "DATA_TYPES",
    "FP16",
    "FP32",
    "FP64",
    "GPU",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "STRING",
    "TARGETS",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "Batching",
    "Declared",
    "Deployment",
    "Model",
    "QueuePolicy",
    "Step",
    "Tensor",
    "declared",
    "ensemble",
    "model",
    "models",
]
