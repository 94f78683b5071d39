"""The declarations: a model's interface (:class:`Model`, its :class:`Tensor` objects, the parameters clients
read) and, per target, what differs there (:class:`Deployment`: backend or platform, instances, batching,
engine parameters, ensemble steps). Pure data, standard library only, so that model code, clients and the
front door import it at no cost; :mod:`tritonfleet.spec.config` turns it into Triton's ``ModelConfig``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

GPU, CPU = "gpu", "cpu"
TARGETS = (GPU, CPU)  # the GPU config is config.pbtxt, the reference the other targets' files add to

# Triton's request priorities (1 the highest): interactive requests carry a batcher's default level, batch
# jobs (tritonfleet/batch) the lower one. Python models cannot read a request's priority (python_backend
# 24.10), so batch jobs also send it as the request parameter PRIORITY_PARAMETER, which ensembles and
# tensorrt_llm_bls pass on to the CPU LLM's scheduler.
INTERACTIVE_PRIORITY, BATCH_PRIORITY = 1, 2
PRIORITY_PARAMETER = "priority_level"


def least_instances(priority_levels: int, decoupled: bool) -> int:
    """The fewest instances a model may run: two where its batcher has priority levels and it answers inside
    ``execute`` (it is not decoupled), else one.

    Triton 2.51's batcher with priority levels hands a request on only while an instance waits for work. A
    request that comes in while the one instance is still returning from its last ``execute`` (its answer
    already sent) waits out the batcher's idle sleep of 500 ms. wine_sklearn straight to Triton at gRPC
    concurrency 1: one instance, 2 of 3000 requests took 502 ms (793 req/s); two instances, none over 77 ms
    (1152 req/s; 1185 without priority levels; docs/batch.md). A decoupled model hands its requests to its own
    scheduler and returns at once (TensorRT-LLM's backend)."""
    return 2 if priority_levels and not decoupled else 1


# Triton's data types, without the ``TYPE_`` prefix (``STRING`` is KServe's ``BYTES``).
_INTEGERS = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
DATA_TYPES = ("BOOL", *_INTEGERS, "FP16", "FP32", "FP64", "BF16", "STRING")


def _frozen(mapping: Mapping[Any, Any] | None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping or {}))


def _targets(targets: Iterable[str], what: str) -> tuple[str, ...]:
    found = tuple(targets)
    unknown = [t for t in found if t not in TARGETS]
    if unknown or not found:
        raise ValueError(f"{what}: targets {found}; expected some of {TARGETS}")
    return found


@dataclass(frozen=True)
class Tensor:
    """One input or output: its name, data type (one of :data:`DATA_TYPES`, "FP32", "STRING", ...) and dims.
    ``dims`` exclude the batch dim (-1: any size). ``targets``: where it exists; a
    tensor that only some targets have is one the GPU config lacks (listed in those targets' configs as
    ``extra_tensors``, which ``fleet validate`` accepts), so clients written for the GPU never see it.
    ``reshape`` and ``allow_ragged_batch`` are how the serving model receives it."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    optional: bool = False
    label_filename: str | None = None
    reshape: tuple[int, ...] | None = None
    allow_ragged_batch: bool = False
    targets: tuple[str, ...] = TARGETS

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a tensor needs a name")
        if self.dtype not in DATA_TYPES:
            raise ValueError(f"tensor {self.name!r}: data type {self.dtype!r} is not one of {DATA_TYPES}")
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if self.reshape is not None:
            object.__setattr__(self, "reshape", tuple(int(d) for d in self.reshape))
        object.__setattr__(self, "targets", _targets(self.targets, f"tensor {self.name!r}"))

    def on(self, target: str) -> bool:
        return target in self.targets

    def but(self, **changes: Any) -> Tensor:
        """This tensor with some fields changed (another model's view of the same tensor)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Step:
    """One step of an ensemble: ``input_map`` (the step model's input -> the ensemble tensor it reads) and
    ``output_map`` (the step model's output -> the ensemble tensor it writes), in the order written."""

    model: str
    input_map: Mapping[str, str]
    output_map: Mapping[str, str]

    def __post_init__(self) -> None:
        if isinstance(self.model, Model):
            object.__setattr__(self, "model", self.model.name)
        object.__setattr__(self, "input_map", _frozen(self.input_map))
        object.__setattr__(self, "output_map", _frozen(self.output_map))


@dataclass(frozen=True)
class QueuePolicy:
    """Triton's ``ModelQueuePolicy``: queue size cap (0: none) and what happens to requests that time out."""

    max_queue_size: int = 0
    timeout_action: str = "REJECT"  # or "DELAY"
    default_timeout_us: int = 0
    allow_timeout_override: bool = False


@dataclass(frozen=True)
class Batching:
    """Triton's dynamic batcher: queue delay, preferred sizes, and the priority levels and queue policies
    (``queue_policy`` is ``default_queue_policy``; ``priority_queue_policy`` maps a level to its own)."""

    max_queue_delay_us: int = 0
    preferred: tuple[int, ...] = ()
    preserve_ordering: bool = False
    priority_levels: int = 0
    default_priority_level: int = 0
    queue_policy: QueuePolicy | None = None
    priority_queue_policy: Mapping[int, QueuePolicy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "preferred", tuple(self.preferred))
        object.__setattr__(self, "priority_queue_policy", _frozen(self.priority_queue_policy))

    @classmethod
    def interactive_first(cls, **fields: Any) -> Batching:
        """A batcher with two priority levels: requests of :data:`BATCH_PRIORITY` wait while interactive ones
        (the default level) are queued."""
        return cls(priority_levels=BATCH_PRIORITY, default_priority_level=INTERACTIVE_PRIORITY, **fields)


@dataclass(frozen=True)
class Deployment:
    """How one target serves a model: what may differ between targets without clients noticing.

    ``instances`` is the count of one instance group of ``kind`` ("cpu" or "gpu"; an ensemble has none).
    ``parameters`` are the engine's (``string_value`` each); ``bls_models`` the models a BLS model calls (the
    ``bls_models`` parameter, which ``fleet serve`` loads with it); ``steps`` an ensemble's wiring.
    ``doc`` says why this target differs; it is rendered into that target's file."""

    backend: str | None = None
    platform: str | None = None
    instances: int | None = 1
    kind: str = CPU
    batching: Batching | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    default_model_filename: str | None = None
    bls_models: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if (self.backend is None) == (self.platform is None):
            raise ValueError("a deployment has a backend or a platform (one of them)")
        if self.kind not in TARGETS:
            raise ValueError(f"instance kind {self.kind!r}: expected one of {TARGETS}")
        if bool(self.steps) != (self.platform == "ensemble"):
            raise ValueError('ensemble steps belong to platform "ensemble", and it needs them')
        if self.steps:
            object.__setattr__(self, "instances", None)  # Triton schedules an ensemble's steps, not instances
        object.__setattr__(self, "parameters", _frozen(self.parameters))
        object.__setattr__(self, "bls_models", tuple(self.bls_models))
        object.__setattr__(self, "steps", tuple(self.steps))

    def but(self, **changes: Any) -> Deployment:
        """This deployment with some fields changed (``parameters`` are merged: a value None drops a key)."""
        if "parameters" in changes:
            merged = {**self.parameters, **changes["parameters"]}
            changes["parameters"] = {k: v for k, v in merged.items() if v is not None}
        return dataclasses.replace(self, **changes)


def ensemble(*steps: Step, doc: str = "") -> Deployment:
    """An ensemble's deployment: its steps, in order."""
    return Deployment(platform="ensemble", steps=steps, doc=doc)


def tensorrt_plan(
    preferred: tuple[int, ...], *, parameters: Mapping[str, str] | None = None, doc: str = ""
) -> Deployment:
    """An ONNX model's GPU deployment: a TensorRT plan (built by build/tensorrt_plan.py), two instances per
    GPU batched to the ``preferred`` sizes within 0.5 ms, interactive requests first."""
    return Deployment(
        platform="tensorrt_plan",
        instances=2,
        kind=GPU,
        batching=Batching.interactive_first(preferred=preferred, max_queue_delay_us=500),
        parameters=parameters or {},
        doc=doc,
    )


def onnxruntime(threads: int, *, doc: str = "") -> Deployment:
    """An ONNX model's CPU deployment: the same export on onnxruntime, two instances of ``threads`` intra-op
    threads each, batching what is queued without waiting, interactive requests first."""
    return Deployment(
        platform="onnxruntime_onnx",
        instances=2,
        batching=Batching.interactive_first(max_queue_delay_us=0),
        parameters={"intra_op_thread_count": str(threads)},
        doc=doc,
    )


@dataclass(frozen=True)
class Model:
    """One Triton model, declared once for every target.

    The interface (``inputs``, ``outputs``, ``max_batch_size``, ``decoupled`` and ``parameters``, the ones
    clients read, such as feature and class names) is the same on every target, but for the tensors that
    name only some targets. ``gpu`` is the production deployment (``config.pbtxt``); ``cpu`` is the CPU
    target's (None: the same), rendered as ``configs/cpu.pbtxt`` only where the two configs differ.
    ``doc`` (what the model is and why it is so) is rendered into both files."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch_size: int
    gpu: Deployment
    cpu: Deployment | None = None
    decoupled: bool = False
    parameters: Mapping[str, str] = field(default_factory=dict)
    doc: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "parameters", _frozen(self.parameters))
        for kind, tensors in (("input", self.inputs), ("output", self.outputs)):
            names = [t.name for t in tensors]
            if len(set(names)) != len(names):
                raise ValueError(f"{self.name}: an {kind} name appears twice in {names}")
        for target in TARGETS:
            clash = set(self.parameters) & set(self.deployment(target).parameters)
            if clash:
                raise ValueError(f"{self.name} [{target}]: parameters {sorted(clash)} are the interface's")
            instances, least = self.deployment(target).instances, self.least_instances(target)
            if instances is not None and instances < least:
                raise ValueError(
                    f"{self.name} [{target}]: {instances} instance(s); a batcher with priority levels needs "
                    f"{least} (least_instances says why)"
                )
        for tensor in (*self.inputs, *self.outputs):
            if tensor.on(GPU) and set(tensor.targets) != set(TARGETS):
                raise ValueError(
                    f"{self.name}: {tensor.name!r} is on the GPU but not on every target: a target may add "
                    "tensors to the GPU config's interface, never drop one"
                )
        for tensor in self.inputs:
            if not tensor.on(GPU) and not tensor.optional:
                raise ValueError(
                    f"{self.name}: input {tensor.name!r} is on some targets only: make it optional"
                )

    def deployment(self, target: str) -> Deployment:
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; expected one of {TARGETS}")
        return self.cpu if target == CPU and self.cpu is not None else self.gpu

    def least_instances(self, target: str) -> int:
        """The fewest instances the model may run on ``target`` (:func:`least_instances`)."""
        batching = self.deployment(target).batching
        return least_instances(batching.priority_levels if batching else 0, self.decoupled)

    def inputs_on(self, target: str) -> tuple[Tensor, ...]:
        return tuple(t for t in self.inputs if t.on(target))

    def outputs_on(self, target: str) -> tuple[Tensor, ...]:
        return tuple(t for t in self.outputs if t.on(target))

    def extra_tensors(self, target: str) -> tuple[str, ...]:
        """The tensors ``target`` has and the GPU config lacks: inputs, then outputs."""
        return tuple(t.name for t in (*self.inputs, *self.outputs) if t.on(target) and not t.on(GPU))

    def input(self, name: str) -> Tensor:
        return _named(self.inputs, name, f"{self.name} has no input")

    def output(self, name: str) -> Tensor:
        return _named(self.outputs, name, f"{self.name} has no output")


def _named(tensors: tuple[Tensor, ...], name: str, what: str) -> Tensor:
    for tensor in tensors:
        if tensor.name == name:
            return tensor
    raise KeyError(f"{what} {name!r}")
