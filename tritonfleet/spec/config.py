"""From a declared :class:`~tritonfleet.spec.Model` to Triton's config, per target.

:func:`to_config` builds the ``ModelConfig`` message; :func:`render` writes the same config as the readable
``.pbtxt`` the repository commits (a header naming its source, the model's doc as comments, a tensor per
line). :func:`rendered` is the whole repository as files: ``<model>/config.pbtxt`` (the GPU target) and,
only where the CPU config differs from it, ``<model>/configs/cpu.pbtxt`` (what Triton's
``--model-config-name=cpu`` picks; it falls back to ``config.pbtxt`` elsewhere). ``fleet render`` writes
them; ``fleet validate`` fails while a committed file differs.
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

from google.protobuf import text_encoding
from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet.spec import tuning
from tritonfleet.spec.declare import CPU, GPU, TARGETS, Batching, Deployment, Model, QueuePolicy, Tensor
from tritonfleet.spec.registry import declared

WIDTH = 110  # the project's line length
GPU_FILE, CPU_FILE = "config.pbtxt", "configs/cpu.pbtxt"
EXTRA_TENSORS = "extra_tensors"  # the tensors a target adds to the GPU config's interface
BLS_MODELS = "bls_models"  # the models a BLS model calls (fleet serve loads them with it)
_KIND = {GPU: "KIND_GPU", CPU: "KIND_CPU"}


def tuned(model: Model, target: str, record: tuning.Record | None) -> Deployment:
    """The model's deployment on ``target`` with what ``fleet tune`` chose (its CPU record): the instance
    count, and the batcher's preferred sizes and queue delay where the declaration has a batcher. No record:
    as declared. A record of fewer instances than the model may run is refused: run ``fleet tune`` again."""
    deployment = model.deployment(target)
    if record is None or deployment.steps:
        return deployment
    if record.instances < model.least_instances(target):
        raise tuning.TuningError(
            f"{model.name}/tuning/{target}.json: {record.instances} instance(s), fewer than the "
            f"{model.least_instances(target)} a batcher with priority levels needs: run `fleet tune "
            f"{model.name}` again"
        )
    changes: dict[str, object] = {"instances": record.instances}
    if deployment.batching is not None:
        batching: dict[str, object] = {}
        if record.preferred_batch_size is not None:
            batching["preferred"] = record.preferred_batch_size
        if record.max_queue_delay_microseconds is not None:
            batching["max_queue_delay_us"] = record.max_queue_delay_microseconds
        changes["batching"] = dataclasses.replace(deployment.batching, **batching)
    return dataclasses.replace(deployment, **changes)


def cpu_record(root: Path | None, model: Model) -> tuning.Record | None:
    """The model's CPU tuning record in the repository at ``root`` (None: no root, or none written)."""
    if root is None:
        return None
    return tuning.records(root / model.name).get(CPU)


def parameters(model: Model, target: str) -> dict[str, str]:
    """The config's parameters on ``target``: the interface's, the BLS models, the engine's, and the names of
    the tensors this target adds to the GPU config's interface."""
    deployment = model.deployment(target)
    found = dict(model.parameters)
    if deployment.bls_models:
        found[BLS_MODELS] = ",".join(deployment.bls_models)
    found |= deployment.parameters
    if extra := model.extra_tensors(target):
        found[EXTRA_TENSORS] = ",".join(extra)
    return found


def to_config(model: Model, target: str, record: tuning.Record | None = None) -> mc.ModelConfig:
    """The model's Triton config on ``target`` (the CPU's with its tuning ``record`` applied)."""
    deployment = tuned(model, target, record if target == CPU else None)
    config = mc.ModelConfig(name=model.name, max_batch_size=model.max_batch_size)
    if deployment.platform:
        config.platform = deployment.platform
    if deployment.backend:
        config.backend = deployment.backend
    if model.decoupled:
        config.model_transaction_policy.decoupled = True
    for tensor in model.inputs_on(target):
        _input(config.input.add(), tensor)
    for tensor in model.outputs_on(target):
        _output(config.output.add(), tensor, model.name)
    if deployment.instances is not None:
        config.instance_group.add(count=deployment.instances, kind=_KIND[deployment.kind])
    if deployment.batching is not None:
        _batching(config.dynamic_batching, deployment.batching)
    if deployment.default_model_filename:
        config.default_model_filename = deployment.default_model_filename
    for key, value in parameters(model, target).items():
        config.parameters[key].string_value = value
    for step in deployment.steps:
        message = config.ensemble_scheduling.step.add(model_name=step.model, model_version=-1)
        message.input_map.update(step.input_map)
        message.output_map.update(step.output_map)
    return config


def _input(message: mc.ModelInput, tensor: Tensor) -> None:
    message.name, message.data_type = tensor.name, _dtype(tensor)
    message.dims.extend(tensor.dims)
    if tensor.reshape is not None:
        message.reshape.SetInParent()
        message.reshape.shape.extend(tensor.reshape)
    message.allow_ragged_batch = tensor.allow_ragged_batch
    message.optional = tensor.optional


def _output(message: mc.ModelOutput, tensor: Tensor, model: str) -> None:
    if tensor.optional or tensor.allow_ragged_batch:
        raise ValueError(f"{model}: output {tensor.name!r}: only inputs are optional or ragged")
    message.name, message.data_type = tensor.name, _dtype(tensor)
    message.dims.extend(tensor.dims)
    if tensor.reshape is not None:
        message.reshape.SetInParent()
        message.reshape.shape.extend(tensor.reshape)
    if tensor.label_filename:
        message.label_filename = tensor.label_filename


def _dtype(tensor: Tensor) -> int:
    return mc.DataType.Value(f"TYPE_{tensor.dtype}")


def _batching(message: mc.ModelDynamicBatching, batching: Batching) -> None:
    message.SetInParent()
    message.preferred_batch_size.extend(batching.preferred)
    message.max_queue_delay_microseconds = batching.max_queue_delay_us
    message.preserve_ordering = batching.preserve_ordering
    message.priority_levels = batching.priority_levels
    message.default_priority_level = batching.default_priority_level
    if batching.queue_policy is not None:
        _queue_policy(message.default_queue_policy, batching.queue_policy)
    for level, policy in batching.priority_queue_policy.items():
        _queue_policy(message.priority_queue_policy[level], policy)


def _queue_policy(message: mc.ModelQueuePolicy, policy: QueuePolicy) -> None:
    message.SetInParent()
    message.timeout_action = mc.ModelQueuePolicy.TimeoutAction.Value(policy.timeout_action)
    message.default_timeout_microseconds = policy.default_timeout_us
    message.allow_timeout_override = policy.allow_timeout_override
    message.max_queue_size = policy.max_queue_size


def differs(model: Model, target: str, record: tuning.Record | None = None) -> bool:
    """Whether ``target`` needs a config of its own (it differs from the GPU's)."""
    return target != GPU and to_config(model, target, record) != to_config(model, GPU)


def file_of(target: str) -> str:
    return GPU_FILE if target == GPU else f"configs/{target}.pbtxt"


def rendered(models: Iterable[Model] | None = None, root: Path | None = None) -> dict[str, str | None]:
    """The repository's config files (``<model>/config.pbtxt``, ``<model>/configs/cpu.pbtxt``) and their
    text; None for a target file that must not exist (its config is the GPU one). ``root``: the repository
    whose CPU tuning records (``<model>/tuning/cpu.json``, fleet tune) the CPU configs carry."""
    found = declared()
    files: dict[str, str | None] = {}
    for model in declared_models() if models is None else models:
        same = model.name in found and found[model.name].model == model  # else a variant's (render says)
        source, record = found[model.name].source if same else None, cpu_record(root, model)
        for target in TARGETS:
            own = target == GPU or differs(model, target, record)
            text = render(model, target, source, record) if own else None
            files[f"{model.name}/{file_of(target)}"] = text
    return files


def declared_models() -> list[Model]:
    return [d.model for d in declared().values()]


# -- the readable text -------------------------------------------------------------------------------------


def render(model: Model, target: str, source: str | None = None, record: tuning.Record | None = None) -> str:
    """The config of ``to_config(model, target, record)`` as readable text (``source``: the declaring file,
    named in the header; by default the one the registry found)."""
    if source is None:
        found = declared().get(model.name)
        source = found.source if found is not None and found.model == model else "its interface declaration"
    record = record if target == CPU else None
    deployment = tuned(model, target, record)
    lines = [
        f"# Rendered by `fleet render` from {source}: edit that file, then run",
        "# `fleet render` (`fleet validate` fails while this file differs from its rendering).",
    ]
    if record is not None and not deployment.steps:
        lines.append(
            f"# Tuned: instances and batcher settings from {model.name}/tuning/cpu.json ({record.tool}, "
            f"{record.measured_at}: {record.throughput_per_instance:g} inferences/s per instance)."
        )
    for doc in (model.doc, deployment.doc):
        if doc.strip():
            lines += ["#", *_comment(doc)]
    lines.append(f"name: {_quote(model.name)}")
    if deployment.platform:
        lines.append(f"platform: {_quote(deployment.platform)}")
    if deployment.backend:
        lines.append(f"backend: {_quote(deployment.backend)}")
    lines.append(f"max_batch_size: {model.max_batch_size}")
    if model.decoupled:
        lines.append("model_transaction_policy { decoupled: true }")
    lines += _block("input", [_tensor(t) for t in model.inputs_on(target)])
    lines += _block("output", [_tensor(t) for t in model.outputs_on(target)])
    if deployment.instances is not None:
        kind = _KIND[deployment.kind]
        lines.append(f"instance_group [ {{ count: {deployment.instances}, kind: {kind} }} ]")
    if deployment.batching is not None:
        lines += _dynamic_batching(deployment.batching)
    if deployment.default_model_filename:
        lines.append(f"default_model_filename: {_quote(deployment.default_model_filename)}")
    for key, value in parameters(model, target).items():
        lines += _parameter(key, value)
    if deployment.steps:
        lines += ["ensemble_scheduling {", "  step ["]
        for i, step in enumerate(deployment.steps):
            lines += ["    {", f"      model_name: {_quote(step.model)}", "      model_version: -1"]
            lines += _map("input_map", step.input_map, "      ")
            lines += _map("output_map", step.output_map, "      ")
            lines.append("    }," if i < len(deployment.steps) - 1 else "    }")
        lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def _comment(doc: str) -> list[str]:
    """A docstring as comment lines: paragraphs (blank-line separated) wrapped to the line length."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", textwrap.dedent(doc).strip()):
        if out:
            out.append("#")
        text = " ".join(paragraph.split())
        out += [f"# {line}" for line in textwrap.wrap(text, WIDTH - 2, break_on_hyphens=False)]
    return out


def _quote(text: str) -> str:
    return f'"{text_encoding.CEscape(text, as_utf8=True)}"'


def _ints(values: Iterable[int]) -> str:
    items = ", ".join(str(v) for v in values)
    return f"[ {items} ]" if items else "[ ]"


def _tensor(t: Tensor) -> str:
    fields = [f"name: {_quote(t.name)}", f"data_type: TYPE_{t.dtype}", f"dims: {_ints(t.dims)}"]
    if t.reshape is not None:
        fields.append(f"reshape: {{ shape: {_ints(t.reshape)} }}")
    if t.allow_ragged_batch:
        fields.append("allow_ragged_batch: true")
    if t.optional:
        fields.append("optional: true")
    if t.label_filename:
        fields.append(f"label_filename: {_quote(t.label_filename)}")
    return "{ " + ", ".join(fields) + " }"


def _block(name: str, items: list[str]) -> list[str]:
    if not items:
        return []
    return [f"{name} [", *(f"  {item}," for item in items[:-1]), f"  {items[-1]}", "]"]


def _policy(policy: QueuePolicy) -> str:
    fields = []
    if policy.timeout_action != "REJECT":
        fields.append(f"timeout_action: {policy.timeout_action}")
    if policy.default_timeout_us:
        fields.append(f"default_timeout_microseconds: {policy.default_timeout_us}")
    if policy.allow_timeout_override:
        fields.append("allow_timeout_override: true")
    fields.append(f"max_queue_size: {policy.max_queue_size}")
    return "{ " + ", ".join(fields) + " }"


def _dynamic_batching(batching: Batching) -> list[str]:
    lines = ["dynamic_batching {"]
    if batching.preferred:
        lines.append(f"  preferred_batch_size: {_ints(batching.preferred)}")
    lines.append(f"  max_queue_delay_microseconds: {batching.max_queue_delay_us}")
    if batching.preserve_ordering:
        lines.append("  preserve_ordering: true")
    if batching.priority_levels:
        lines.append(f"  priority_levels: {batching.priority_levels}")
    if batching.default_priority_level:
        lines.append(f"  default_priority_level: {batching.default_priority_level}")
    if batching.queue_policy is not None:
        lines.append(f"  default_queue_policy: {_policy(batching.queue_policy)}")
    for level, policy in batching.priority_queue_policy.items():
        lines.append(f"  priority_queue_policy {{ key: {level}, value: {_policy(policy)} }}")
    return [*lines, "}"]


def _parameter(key: str, value: str) -> list[str]:
    """One parameter on one line; a long list value (comma-separated) over several, as adjacent strings."""
    line = f"parameters {{ key: {_quote(key)}, value: {{ string_value: {_quote(value)} }} }}"
    if len(line) <= WIDTH or "," not in value:
        return [line]
    inner = f"  value: {{ string_value: {_quote(value)} }}"
    if len(inner) <= WIDTH:
        return ["parameters {", f"  key: {_quote(key)}", inner, "}"]
    lead = "    string_value: "
    chunks = _chunks(value, WIDTH - len(lead) - 2)
    body = [f"{lead}{_quote(chunks[0])}", *(f"{' ' * len(lead)}{_quote(c)}" for c in chunks[1:])]
    return ["parameters {", f"  key: {_quote(key)}", "  value: {", *body, "  }", "}"]


def _chunks(value: str, width: int) -> list[str]:
    """``value`` cut after its commas (and the blank after each) into pieces of at most ``width``, whose
    concatenation is ``value``."""
    chunks = [""]
    for token in re.findall(r"[^,]*,\s?|[^,]+$", value):
        if chunks[-1] and len(chunks[-1]) + len(token) > width:
            chunks.append("")
        chunks[-1] += token
    return chunks


def _map(name: str, mapping: Mapping[str, str], indent: str) -> list[str]:
    entries = [f"{{ key: {_quote(k)}, value: {_quote(v)} }}" for k, v in mapping.items()]
    if len(entries) == 1:
        return [f"{indent}{name} {entries[0]}"]
    inner = indent + "  "
    return [
        f"{indent}{name} [",
        *(f"{inner}{e}," for e in entries[:-1]),
        *(f"{inner}{e}" for e in entries[-1:]),
        f"{indent}]",
    ]


def write(root: Path, models: Iterable[Model] | None = None) -> list[str]:
    """Render the declared models into the repository at ``root``: each file that differs is written, a
    target file its model no longer needs is removed. The files changed, relative to ``root``."""
    changed = []
    for name, text in rendered(models, root).items():
        path = root / name
        if text is None:
            if path.is_file():
                path.unlink()
                if path.parent.name == "configs" and not any(path.parent.iterdir()):
                    path.parent.rmdir()
                changed.append(name)
        elif not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            changed.append(name)
    return changed
