#!/usr/bin/env python3
"""Build ``model.plan`` from ``<model-dir>/1/model.onnx`` with the TensorRT Python API, for any ONNX model of
the fleet whose GPU config says ``platform: "tensorrt_plan"`` (which ones: tritonfleet/deploy/tensorrt.py).

    python build/tensorrt_plan.py --model-dir model_repository/efficientnet_lite0 [--output DIR]
        [--no-fp16] [--int8 --calibration SAMPLES.npz] [--check SAMPLES.npz] [--workspace-gib 0.5]
        [--print-command]

writes ``DIR/model.plan`` (default DIR: ``<model-dir>/1``), the recipe convention of ``fleet build``.

Precision: fp16 kernels by default (I/O stays as the ONNX declares it); ``--int8`` adds int8 kernels with
post-training calibration over real inputs: ``SAMPLES.npz`` holds one array per input, batch first, made by
the model's pipeline from real data (``fleet deploy calibration MODEL``), fed through TensorRT's entropy
calibrator in batches within the profile; the calibration cache is written beside the plan. TensorRT 10
deprecates this implicit quantization in favour of Q/DQ graphs (ModelOpt) but still builds it.

The optimization profile is derived from the model's GPU config (``config.pbtxt``), for every input: the
batch dimension from 1 up to ``max_batch_size``, optimized for the largest
``dynamic_batching.preferred_batch_size`` (or ``max_batch_size`` when there is none), no batch dimension
when ``max_batch_size`` is 0; the variable dims (``-1``) from the parameters ``tensorrt_min_shapes``,
``tensorrt_opt_shapes`` and ``tensorrt_max_shapes``, which give each such input's shape without the batch
dimension in trtexec's syntax (``input_ids:1,attention_mask:1``; ``x`` between dims: ``image:3x64x64``).
The builder workspace is limited to ``WORKSPACE_GIB`` (the figure the placement planner assumes per
instance, tritonfleet/plan/memory.py). Plans are specific to the GPU and the TensorRT version, so this runs
on the serving GPU inside the image from ``docker/Dockerfile`` (its entrypoint calls it at start). After
building, the plan is deserialized and its tensors checked against the config before it is moved into
place; ``--check`` then runs it and onnxruntime on the same real inputs and fails beyond the tolerance of
its precision. Targets TensorRT 10 (the image's 10.14, TensorRT-LLM 1.2.1's).

Standalone script: ``build/`` is not a package, and it runs on the serving image's Python (3.12).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

Shape = tuple[int, ...]

TRT_PLATFORM = "tensorrt_plan"
WORKSPACE_GIB = 0.5  # tritonfleet/plan/memory.py TRT_WORKSPACE: the planner counts this much per instance
# How close a plan must come to onnxruntime on real inputs, by precision: (max |a-b| / max |b|, cosine).
TOLERANCE = {"fp32": (1e-3, 0.99999), "fp16": (2e-2, 0.9995), "int8": (0.15, 0.98)}
# Triton data type -> name of the matching ``tensorrt.DataType`` member.
TRT_DTYPES = {
    "TYPE_FP32": "FLOAT",
    "TYPE_FP16": "HALF",
    "TYPE_BF16": "BF16",
    "TYPE_INT8": "INT8",
    "TYPE_UINT8": "UINT8",
    "TYPE_INT32": "INT32",
    "TYPE_INT64": "INT64",
    "TYPE_BOOL": "BOOL",
}


class PlanError(RuntimeError):
    """The config, the ONNX model or the built plan is not what Triton will need."""


@dataclass(frozen=True)
class Profile:
    """One input's shapes in the optimization profile: its name and min/opt/max shapes, batch first."""

    name: str
    min: Shape
    opt: Shape
    max: Shape


@dataclass(frozen=True)
class Tensor:
    """An I/O tensor of a built engine, as TensorRT reports it."""

    is_input: bool
    dtype: str
    shape: Shape
    profile: tuple[Shape, Shape, Shape] | None = None


def load_config(model_dir: Path) -> mc.ModelConfig:
    """Parse ``<model_dir>/config.pbtxt`` (the GPU config) with Triton's schema."""
    path = model_dir / "config.pbtxt"
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except text_format.ParseError as exc:
        raise PlanError(f"{path}: {exc}") from exc


SHAPE_PARAMETERS = ("tensorrt_min_shapes", "tensorrt_opt_shapes", "tensorrt_max_shapes")


def profiles_from_config(config: mc.ModelConfig) -> tuple[Profile, ...]:
    """The optimization profile a TensorRT model's config implies, one entry per input in config order."""
    if config.platform != TRT_PLATFORM and config.backend != "tensorrt":
        kind = config.platform or config.backend
        raise PlanError(f"{config.name}: {kind!r} is not a TensorRT model (platform {TRT_PLATFORM!r})")
    if not config.input:
        raise PlanError(f"{config.name}: the config declares no input")
    if config.max_batch_size < 0:
        raise PlanError(f"{config.name}: max_batch_size must be >= 0")
    batched = config.max_batch_size > 0
    largest = config.max_batch_size
    opt = max(config.dynamic_batching.preferred_batch_size, default=largest)
    if batched and not 1 <= opt <= largest:
        raise PlanError(f"{config.name}: preferred_batch_size {opt} is outside 1..{largest}")
    given = [_shapes_parameter(config, key) for key in SHAPE_PARAMETERS]
    unknown = set().union(*given) - {t.name for t in config.input}
    if unknown:
        raise PlanError(f"{config.name}: {', '.join(SHAPE_PARAMETERS)} name unknown inputs {sorted(unknown)}")
    profiles = []
    for tensor in config.input:
        dims = tuple(tensor.dims)
        if not dims or 0 in dims or min(dims) < -1:
            raise PlanError(f"{config.name}: input {tensor.name!r} has invalid dims {list(dims)}")
        low, best, high = (shapes.get(tensor.name, dims) for shapes in given)
        if -1 in dims and any(tensor.name not in shapes for shapes in given):
            raise PlanError(
                f"{config.name}: input {tensor.name!r} has variable dims {list(dims)}: give its range in "
                f"the parameters {', '.join(SHAPE_PARAMETERS)} (e.g. {tensor.name}:1)"
            )
        for shape in (low, best, high):
            fits = len(shape) == len(dims) and all(d in (-1, s) for d, s in zip(dims, shape, strict=True))
            if not fits or min(shape) < 1:
                where = f"{config.name}: input {tensor.name!r}"
                raise PlanError(f"{where}: shape {list(shape)} does not fit dims {list(dims)}")
        if not all(a <= b <= c for a, b, c in zip(low, best, high, strict=True)):
            raise PlanError(
                f"{config.name}: input {tensor.name!r}: need min <= opt <= max, got {low} {best} {high}"
            )
        if batched:
            profiles.append(Profile(tensor.name, (1, *low), (opt, *best), (largest, *high)))
        else:
            profiles.append(Profile(tensor.name, tuple(low), tuple(best), tuple(high)))
    return tuple(profiles)


def _shapes_parameter(config: mc.ModelConfig, key: str) -> dict[str, Shape]:
    """``name:AxB,name2:C`` (a config parameter, trtexec's syntax without the batch dim) as shapes by name."""
    parameter = config.parameters.get(key)  # .get: indexing a protobuf map would insert the key
    shapes: dict[str, Shape] = {}
    for entry in (parameter.string_value if parameter else "").split(","):
        if not entry.strip():
            continue
        name, _, spec = entry.strip().rpartition(":")
        try:
            shapes[name] = tuple(int(d) for d in spec.split("x"))
        except ValueError:
            raise PlanError(f"{config.name}: parameter {key}: {entry.strip()!r} is not NAME:AxB") from None
        if not name:
            raise PlanError(f"{config.name}: parameter {key}: {entry.strip()!r} is not NAME:AxB")
    return shapes


def trtexec_command(
    onnx: Path,
    plan: Path,
    profiles: tuple[Profile, ...],
    fp16: bool,
    workspace_gib: float | None = None,
    int8_cache: Path | None = None,
) -> list[str]:
    """The ``trtexec`` command that builds the same plan (int8: from the calibration cache a Python build
    wrote, which trtexec reads but cannot make from real inputs itself)."""

    def spec(which: str) -> str:
        def one(p: Profile) -> str:
            name = f"'{p.name}'" if ":" in p.name else p.name
            return f"{name}:{'x'.join(map(str, getattr(p, which)))}"

        return ",".join(one(p) for p in profiles)

    command = [
        "trtexec",
        f"--onnx={onnx}",
        f"--saveEngine={plan}",
        f"--minShapes={spec('min')}",
        f"--optShapes={spec('opt')}",
        f"--maxShapes={spec('max')}",
    ]
    if workspace_gib is not None:
        command.append(f"--memPoolSize=workspace:{round(workspace_gib * 1024)}")  # MiB
    if fp16:
        command.append("--fp16")
    if int8_cache is not None:
        command += ["--int8", f"--calib={int8_cache}"]
    return command


def check_tensors(
    tensors: dict[str, Tensor], config: mc.ModelConfig, profiles: tuple[Profile, ...]
) -> list[str]:
    """What differs between a built engine's I/O tensors and the config; empty when they match."""
    expected = [(t, True) for t in config.input] + [(t, False) for t in config.output]
    wanted = {p.name: (p.min, p.opt, p.max) for p in profiles}
    problems = []
    names = {t.name for t, _ in expected}
    if set(tensors) != names:
        problems.append(f"tensors {sorted(tensors)} != config {sorted(names)}")
    for t, is_input in expected:
        found = tensors.get(t.name)
        if found is None:
            continue
        shape = (-1, *t.dims) if config.max_batch_size > 0 else tuple(t.dims)
        dtype = TRT_DTYPES.get(mc.DataType.Name(t.data_type), "?")
        if found.is_input != is_input:
            problems.append(f"{t.name}: is {'an input' if found.is_input else 'an output'} in the plan")
        if found.dtype != dtype:
            problems.append(f"{t.name}: dtype {found.dtype}, config wants {dtype}")
        if found.shape != shape:
            problems.append(f"{t.name}: shape {list(found.shape)}, config wants {list(shape)}")
        if t.name in wanted and found.profile != wanted[t.name]:
            problems.append(f"{t.name}: profile {found.profile}, config implies {wanted[t.name]}")
    return problems


class CalibrationBatches:
    """Real sample inputs cut into batches that fit the profile: each batch has the profile's opt batch size
    (the last one may be smaller), every input the same rows. Pure numpy: the calibrator copies them to the
    GPU."""

    def __init__(self, samples: dict[str, Any], profiles: tuple[Profile, ...], batched: bool = True) -> None:
        names = [p.name for p in profiles]
        if sorted(samples) != sorted(names):
            raise PlanError(f"calibration inputs {sorted(samples)} != the model's inputs {sorted(names)}")
        rows = {len(samples[n]) for n in names} if batched else {1}
        if len(rows) != 1 or 0 in rows:
            raise PlanError(f"calibration inputs must have the same number of rows, got {sorted(rows)}")
        for p in profiles:
            shape = tuple(samples[p.name].shape[1:] if batched else samples[p.name].shape)
            low, high = (p.min[1:], p.max[1:]) if batched else (p.min, p.max)
            if len(shape) != len(low) or not all(
                a <= s <= b for a, s, b in zip(low, shape, high, strict=True)
            ):
                raise PlanError(
                    f"calibration input {p.name!r}: shape {shape} is outside the profile {low}..{high}"
                )
        self.samples, self.names, self.batched = samples, names, batched
        self.rows = rows.pop()
        self.batch_size = profiles[0].opt[0] if batched else 1

    def __iter__(self):
        if not self.batched:
            yield {n: self.samples[n] for n in self.names}
            return
        for start in range(0, self.rows, self.batch_size):
            yield {n: self.samples[n][start : start + self.batch_size] for n in self.names}

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size) if self.batched else 1


def load_samples(path: Path) -> dict[str, Any]:
    """Arrays by input name from an ``.npz`` written by ``fleet deploy calibration``."""
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _entropy_calibrator(trt: Any, batches: CalibrationBatches, cache: Path) -> Any:
    """TensorRT's ``IInt8EntropyCalibrator2`` over ``batches``; torch (in the image) holds the buffers."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches = iter(batches)
            self.held: list[Any] = []

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            self.held = [torch.from_numpy(batch[n].copy()).cuda() for n in names]
            return [t.data_ptr() for t in self.held]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_plan(
    onnx: Path,
    profiles: tuple[Profile, ...],
    fp16: bool,
    workspace_gib: float,
    calibration: CalibrationBatches | None = None,
    calibration_cache: Path | None = None,
) -> bytes:
    """Parse ``onnx`` and build a serialized engine with one optimization profile over its inputs; with
    ``calibration``, int8 kernels calibrated on those batches."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Networks are always explicit batch from TensorRT 10 (the flag is deprecated); 8.x must ask for it.
    explicit = int(trt.__version__.split(".")[0]) < 10
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if explicit else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise PlanError(f"{onnx}: TensorRT could not parse it:\n{errors}")
    inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(inputs) != sorted(p.name for p in profiles):
        raise PlanError(f"{onnx}: inputs {inputs}, config has {[p.name for p in profiles]}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)  # inner layers only: I/O stays as the ONNX declares it
    optimization_profile = builder.create_optimization_profile()
    for p in profiles:
        optimization_profile.set_shape(p.name, p.min, p.opt, p.max)
    config.add_optimization_profile(optimization_profile)
    if calibration is not None:
        assert calibration_cache is not None
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _entropy_calibrator(trt, calibration, calibration_cache)
        config.set_calibration_profile(optimization_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise PlanError(f"{onnx}: TensorRT failed to build an engine (see its log above)")
    return bytes(serialized)


def plan_tensors(plan: bytes) -> dict[str, Tensor]:
    """Deserialize ``plan`` on this GPU and describe its I/O tensors."""
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    if engine is None:
        raise PlanError("TensorRT could not deserialize the plan it just built")
    tensors = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        profile = tuple(tuple(s) for s in engine.get_tensor_profile_shape(name, 0)) if is_input else None
        dtype = engine.get_tensor_dtype(name).name
        tensors[name] = Tensor(is_input, dtype, tuple(engine.get_tensor_shape(name)), profile)
    return tensors


def agreement(expected: Any, actual: Any) -> tuple[float, float]:
    """(max |actual - expected| / max |expected|, cosine similarity) of two outputs, flattened."""
    import numpy as np

    a = np.asarray(expected, dtype=np.float64).ravel()
    b = np.asarray(actual, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise PlanError(f"output sizes differ: {a.size} vs {b.size}")
    scale = float(np.abs(a).max()) or 1.0
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / norms) if norms else float(np.array_equal(a, b))
    return float(np.abs(a - b).max()) / scale, cosine


def check_against_onnxruntime(
    plan: bytes, onnx: Path, batches: CalibrationBatches, precision: str
) -> list[str]:
    """Run the plan and onnxruntime (CPU) on the same real inputs; one line per output that disagrees
    beyond ``TOLERANCE[precision]`` (empty: they agree)."""
    import numpy as np
    import onnxruntime
    import tensorrt as trt
    import torch

    session = onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    bound, worst, problems = {}, {}, []
    max_rel, min_cos = TOLERANCE[precision]
    for batch in batches:
        for name, array in batch.items():
            context.set_input_shape(name, tuple(array.shape))
            bound[name] = torch.from_numpy(np.ascontiguousarray(array)).cuda()
            context.set_tensor_address(name, bound[name].data_ptr())
        for name in outputs:
            dtype = torch.from_numpy(np.zeros(0, trt.nptype(engine.get_tensor_dtype(name)))).dtype
            bound[name] = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
            context.set_tensor_address(name, bound[name].data_ptr())
        stream = torch.cuda.Stream()
        if not context.execute_async_v3(stream.cuda_stream):
            return ["TensorRT failed to execute the plan"]
        stream.synchronize()
        expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, batch), strict=True))
        for name in outputs:
            rel, cos = agreement(expected[name], bound[name].cpu().numpy())
            worst[name] = (max(rel, worst.get(name, (0, 1))[0]), min(cos, worst.get(name, (0, 1))[1]))
    for name, (rel, cos) in worst.items():
        verdict = "ok" if rel <= max_rel and cos >= min_cos else "DIFFERS"
        print(f"  {name}: max relative difference {rel:.2e}, cosine {cos:.6f} ({precision}: {verdict})")
        if verdict != "ok":
            problems.append(
                f"{name}: max relative difference {rel:.2e} (<= {max_rel}), cosine {cos:.6f} (>= {min_cos})"
            )
    return problems


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="model folder holding config.pbtxt")
    parser.add_argument("--output", type=Path, help="folder for model.plan (default <model-dir>/1)")
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=True, help="FP16 kernels")
    parser.add_argument("--int8", action="store_true", help="int8 kernels, calibrated on --calibration")
    parser.add_argument(
        "--calibration", type=Path, help="real sample inputs (.npz, fleet deploy calibration)"
    )
    parser.add_argument("--check", type=Path, help="compare with onnxruntime on these real inputs (.npz)")
    parser.add_argument(
        "--workspace-gib", type=float, default=WORKSPACE_GIB, help="builder workspace limit (GiB)"
    )
    parser.add_argument("--print-command", action="store_true", help="print the trtexec equivalent and exit")
    args = parser.parse_args(argv)
    if args.int8 and args.calibration is None:
        parser.error("--int8 needs --calibration SAMPLES.npz (real inputs, fleet deploy calibration MODEL)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    onnx = args.model_dir / "1" / "model.onnx"
    plan = (args.output or args.model_dir / "1") / "model.plan"
    try:
        config = load_config(args.model_dir)
        profiles = profiles_from_config(config)
    except (OSError, PlanError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = plan.with_name("calibration.cache") if args.int8 else None
    command = shlex.join(trtexec_command(onnx, plan, profiles, args.fp16, args.workspace_gib, cache))
    if args.print_command:
        print(command)
        return 0
    try:
        import tensorrt as trt
    except ImportError:
        print(
            "error: TensorRT isn't installed here; run this inside the GPU image (docker/Dockerfile),\n"
            f"or build the same plan with trtexec:\n  {command}",
            file=sys.stderr,
        )
        return 3
    if not onnx.is_file():
        print(f"error: {onnx} is missing: export the model to ONNX first", file=sys.stderr)
        return 2

    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    print(f"TensorRT {trt.__version__}: {onnx} -> {plan} ({precision}, profile {profiles})")
    batched = config.max_batch_size > 0
    try:
        calibration = (
            CalibrationBatches(load_samples(args.calibration), profiles, batched) if args.int8 else None
        )
        serialized = build_plan(onnx, profiles, args.fp16, args.workspace_gib, calibration, cache)
        problems = check_tensors(plan_tensors(serialized), config, profiles)
        if not problems and args.check is not None:
            print(f"checking against onnxruntime on {args.check}:")
            batches = CalibrationBatches(load_samples(args.check), profiles, batched)
            problems = check_against_onnxruntime(serialized, onnx, batches, precision)
    except (OSError, PlanError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if problems:
        print(
            f"error: the plan does not match {args.model_dir / 'config.pbtxt'} or onnxruntime:",
            file=sys.stderr,
        )
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 1
    # Write then rename: replicas sharing a plan cache never load a half-written file.
    plan.parent.mkdir(parents=True, exist_ok=True)
    partial = plan.with_name(f"{plan.name}.{os.getpid()}.partial")
    partial.write_bytes(serialized)
    os.replace(partial, plan)
    print(f"wrote {plan} ({len(serialized) / 2**20:.1f} MiB), verified against the config")
    return 0


if __name__ == "__main__":
    sys.exit(main())
