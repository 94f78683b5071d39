"""Measured or tuned throughput per model, the record ``fleet tune`` writes and the planner reads.

One JSON file per model and target: ``model_repository/<model>/tuning/<target>.json``, where ``<target>``
is ``cpu`` or a GPU name of the table (``tritonfleet/plan/gpus.py``) in lower case (``l4``,
``a100-40gb``). Triton ignores the folder (it is not a version). Fields (``format`` 1)::

    {
      "format": 1,
      "model": "efficientnet_lite0",          # the folder name
      "target": "L4",                          # "cpu" or the table's GPU name
      "measured_at": "2026-12-07T10:00:00Z",  # when, UTC
      "tool": "model-analyzer 1.46.0",         # what measured it
      "instances": 2,                          # chosen instance count per device (per GPU, or on the CPU)
      "throughput_per_instance": 850.0,        # inferences/s one instance serves at the chosen settings
      "dynamic_batching": {                    # optional: the chosen batcher settings
        "preferred_batch_size": [16, 32],
        "max_queue_delay_microseconds": 500
      },
      "latency_p99_ms": 14.2,                  # optional
      "gpu_memory_bytes": 734003200            # optional: GPU memory one instance took, measured
    }

``fleet tune`` (tritonfleet/tune/) writes it from Model Analyzer's search. The CPU record is applied by
``fleet render`` to the model's ``configs/cpu.pbtxt`` (instances and the batcher settings: the declaration in
``pipelines/<name>/interface.py`` holds the defaults, the record the tuned values, each fact once); GPU
records are read by ``fleet plan``. The planner takes ``instances`` as the count per GPU (or, with
``fleet plan --rps MODEL=N``, as many as N inferences/s need at ``throughput_per_instance``), the batcher
settings as they are, and a measured ``gpu_memory_bytes`` instead of its own estimate of an instance.
``max_batch_size`` is the interface and is never tuned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

FORMAT = 1


class TuningError(ValueError):
    """A throughput record that is not of the format above, naming the file."""


@dataclass(frozen=True)
class Record:
    model: str
    target: str
    instances: int
    throughput_per_instance: float
    measured_at: str
    tool: str
    preferred_batch_size: tuple[int, ...] | None = None
    max_queue_delay_microseconds: int | None = None
    latency_p99_ms: float | None = None
    gpu_memory_bytes: int | None = None
    path: str = ""

    def describe(self) -> str:
        return f"{self.path} ({self.tool}, {self.measured_at})"


def target_key(target: str) -> str:
    """The file name's stem for a target: ``L4`` -> ``l4``."""
    return target.lower()


def to_json(record: Record) -> dict[str, object]:
    """The record as the file holds it (format 1)."""
    data: dict[str, object] = {
        "format": FORMAT,
        "model": record.model,
        "target": record.target,
        "measured_at": record.measured_at,
        "tool": record.tool,
        "instances": record.instances,
        "throughput_per_instance": round(record.throughput_per_instance, 3),
    }
    batching: dict[str, object] = {}
    if record.preferred_batch_size is not None:
        batching["preferred_batch_size"] = list(record.preferred_batch_size)
    if record.max_queue_delay_microseconds is not None:
        batching["max_queue_delay_microseconds"] = record.max_queue_delay_microseconds
    if batching:
        data["dynamic_batching"] = batching
    if record.latency_p99_ms is not None:
        data["latency_p99_ms"] = round(record.latency_p99_ms, 3)
    if record.gpu_memory_bytes is not None:
        data["gpu_memory_bytes"] = record.gpu_memory_bytes
    return data


def write(model_dir: Path, record: Record) -> Path:
    """``<model_dir>/tuning/<target>.json``, read back to check it; the path."""
    path = model_dir / "tuning" / f"{target_key(record.target)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(record), indent=2) + "\n")
    read(path, model_dir.name)
    return path


def records(model_dir: Path) -> dict[str, Record]:
    """A model's records by target key; none when it has no ``tuning/`` folder."""
    found = {}
    for path in sorted((model_dir / "tuning").glob("*.json")):
        record = read(path, model_dir.name)
        found[target_key(record.target)] = record
    return found


def read(path: Path, model: str) -> Record:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TuningError(f"{path}: {exc}") from None

    def need(key: str, kind: type | tuple[type, ...]) -> object:
        value = data.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TuningError(f"{path}: {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
        return value

    if data.get("format") != FORMAT:
        raise TuningError(f"{path}: format must be {FORMAT}, got {data.get('format')!r}")
    if need("model", str) != model:
        raise TuningError(f"{path}: model is {data['model']!r}, the folder is {model!r}")
    target = need("target", str)
    if path.stem != target_key(str(target)):
        raise TuningError(f"{path}: target {target!r} belongs in {target_key(str(target))}.json")
    instances, throughput = need("instances", int), need("throughput_per_instance", (int, float))
    if instances < 1 or throughput <= 0:  # type: ignore[operator]
        raise TuningError(f"{path}: instances must be >= 1 and throughput_per_instance > 0")
    batching = data.get("dynamic_batching") or {}
    preferred = batching.get("preferred_batch_size")
    delay = batching.get("max_queue_delay_microseconds")
    memory = data.get("gpu_memory_bytes")
    if memory is not None and (not isinstance(memory, int) or memory <= 0):
        raise TuningError(f"{path}: gpu_memory_bytes must be a positive integer, got {memory!r}")
    return Record(
        model=model,
        target=str(target),
        instances=int(instances),  # type: ignore[arg-type]
        throughput_per_instance=float(throughput),  # type: ignore[arg-type]
        measured_at=str(need("measured_at", str)),
        tool=str(need("tool", str)),
        preferred_batch_size=tuple(int(b) for b in preferred) if preferred else None,
        max_queue_delay_microseconds=int(delay) if delay is not None else None,
        latency_p99_ms=data.get("latency_p99_ms"),
        gpu_memory_bytes=memory,
        path=path.as_posix(),
    )
