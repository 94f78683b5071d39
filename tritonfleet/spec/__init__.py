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
    BATCH_PRIORITY,
    CPU,
    DATA_TYPES,
    GPU,
    INTERACTIVE_PRIORITY,
    PRIORITY_PARAMETER,
    TARGETS,
    Batching,
    Deployment,
    Model,
    QueuePolicy,
    Step,
    Tensor,
    ensemble,
    least_instances,
    onnxruntime,
    tensorrt_plan,
)
from tritonfleet.spec.registry import Declared, declared, model, models

__all__ = [
    "BATCH_PRIORITY",
    "CPU",
    "DATA_TYPES",
    "GPU",
    "INTERACTIVE_PRIORITY",
    "PRIORITY_PARAMETER",
    "TARGETS",
    "Batching",
    "Declared",
    "Deployment",
    "Model",
    "QueuePolicy",
]
__all__ += ["Step", "Tensor", "declared", "ensemble", "least_instances", "model", "models", "onnxruntime"]
__all__ += ["tensorrt_plan"]
