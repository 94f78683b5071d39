"""Static validation of a whole model repository, for ``fleet validate`` in CI.

Finds, without a server, what would make Triton refuse a model on either target, breaks of the promise
that clients never change between the GPU and the CPU target, and committed configs that are not the
rendering of the models' declarations (``tritonfleet/pipelines/*/interface.py``, ``fleet render``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet import spec
from tritonfleet.repository import (
    TARGETS,
    ConfigError,
    Repository,
    config_path,
    dependencies,
    named_config_path,
    parse_config,
)
from tritonfleet.spec import tuning
from tritonfleet.spec.config import GPU_FILE, rendered, tuned

_VERSION = re.compile(r"[1-9][0-9]*")  # Triton ignores other folder names, "0" and "01" included


@dataclass(frozen=True)
class Problem:
    """One defect: the model, the file (relative to the repository root) and what is wrong."""

    model: str
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass(frozen=True)
class _Tensor:
    """A tensor's data type and dims as one side of an ensemble map declares them."""

    dtype: int
    dims: tuple[int, ...]
    batched: bool  # an implicit leading batch dim (max_batch_size > 0)

    def __str__(self) -> str:
        return f"{mc.DataType.Name(self.dtype).removeprefix('TYPE_')} [{','.join(map(str, self.dims))}]"

    def mismatch(self, other: _Tensor) -> str | None:
        """Why ``other`` cannot feed this tensor, or None; -1 matches any size, batch dims included."""
        if self.dtype != other.dtype:
            return "data types differ"
        if _dims_match((-1,) * self.batched + self.dims, (-1,) * other.batched + other.dims):
            return None
        if self.batched != other.batched and _dims_match(self.dims, other.dims):
            return "shapes differ: only one side has the implicit batch dim (max_batch_size > 0)"
        return "shapes differ"


def validate_repository(root: Path, models: Sequence[spec.Model] | None = None) -> list[Problem]:
    """Every problem in the repository at ``root``; empty when valid. Never raises on a bad repo.

    ``models``: the declarations whose rendering the repository must be, no more and no fewer (default:
    every declared model; ``()`` checks the files on their own, as for a repository written by hand)."""
    repo = Repository(root)
    model_dirs = repo.model_dirs()
    if not model_dirs:
        return [Problem("", ".", f"no model folders (<name>/config.pbtxt) in {root}")]
    names = set(repo.names())
    problems = _check_rendered(root, names, list(spec.models().values()) if models is None else list(models))
    parsed: dict[Path, mc.ModelConfig | None] = {}

    def report(model: str, path: Path, message: str) -> None:
        problems.append(Problem(model, path.relative_to(root).as_posix(), message))

    for model_dir in model_dirs:
        model = model_dir.name
        if not _versions(model_dir):
            report(model, model_dir, f"{model}: no version folder (a numeric folder such as 1/)")
        for path in [model_dir / "config.pbtxt", *sorted((model_dir / "configs").glob("*.pbtxt"))]:
            parsed[path], error = _parse(path)
            if error:
                report(model, path, f"{model}: {error}")
            for message in _check_file(model_dir, parsed[path], names):
                report(model, path, f"{model}: {message}")
        gpu = parsed[model_dir / "config.pbtxt"]
        for path in sorted((model_dir / "configs").glob("*.pbtxt")):
            for message in _interface_diff(parsed[path], gpu):
                report(model, path, f"{model}: configs/{path.name} and config.pbtxt disagree on {message}")
            extra = parsed[path] is not None and "extra_tensors" in parsed[path].parameters
            if extra and path.stem != "cpu":  # a plan's configs (fleet plan) keep config.pbtxt's interface
                report(
                    model, path, f"{model}: configs/{path.name} declares extra_tensors: only cpu.pbtxt may"
                )
        cpu_path = config_path(model_dir, "cpu")
        cpu = parsed[cpu_path]
        if cpu is not None and any(g.kind == mc.ModelInstanceGroup.KIND_GPU for g in cpu.instance_group):
            fallback = " (no configs/cpu.pbtxt, so the CPU target uses config.pbtxt)" if cpu is gpu else ""
            report(model, cpu_path, f"{model} [cpu]: KIND_GPU instance group{fallback}")

    # Ensembles are checked against the step models' configs for the same target; a problem found
    # on both targets in the same file is reported once, tagged with both.
    found: dict[tuple[str, Path, str], list[str]] = {}
    # Every other configs/NAME.pbtxt (a plan's) is a view of its own: NAME where present, else config.pbtxt.
    views = {t: (lambda d, t=t: config_path(d, t)) for t in TARGETS}
    views |= {n: (lambda d, n=n: named_config_path(d, n)) for n in repo.config_names() if n not in TARGETS}
    for target, path_of in views.items():
        configs = {d.name: parsed[path_of(d)] for d in model_dirs}
        for model_dir in model_dirs:
            config = configs[model_dir.name]
            path = path_of(model_dir)
            if config is not None and config.platform == "ensemble":
                for message in _check_ensemble(config, configs):
                    found.setdefault((model_dir.name, path, message), []).append(target)
            for message in _check_interface(config, configs):
                found.setdefault((model_dir.name, path, message), []).append(target)
    for (model, path, message), targets in found.items():
        report(model, path, f"{model} [{','.join(targets)}]: {message}")
    return problems


def _check_rendered(root: Path, names: set[str], declared: list[spec.Model]) -> list[Problem]:
    """The committed config files against the rendering of ``declared``: each file equal to it, no model
    folder undeclared (none to check against: the files alone are checked)."""
    if not declared:
        return []
    sources = {name: d.source for name, d in spec.declared().items()}
    problems = [
        Problem(
            name,
            name,
            f"{name}: no tritonfleet/pipelines/*/interface.py declares it (MODELS): declare it, "
            "then run `fleet render`",
        )
        for name in sorted(names - {m.name for m in declared})
    ]
    bad_records = []
    for model in declared:
        try:
            tuned(model, spec.CPU, tuning.records(root / model.name).get(spec.CPU))
        except tuning.TuningError as exc:
            bad_records.append(Problem(model.name, f"{model.name}/tuning", f"{model.name}: {exc}"))
    if bad_records:  # the CPU configs carry the records: nothing to render against
        return problems + bad_records
    for file, text in rendered(declared, root).items():
        model = file.split("/", 1)[0]
        source = sources.get(model, "its interface declaration")
        target = "gpu" if file.endswith(f"/{GPU_FILE}") else "cpu"
        path = root / file
        if text is None:
            if path.exists():
                problems.append(
                    Problem(
                        model,
                        file,
                        f"{model} [{target}]: its {target} config is config.pbtxt's ({source}), so "
                        "this file must go: run `fleet render`",
                    )
                )
            continue
        committed = path.read_text(errors="replace") if path.is_file() else None
        if committed == text:
            continue
        if committed is None:
            where = "is missing"
        else:
            mine, theirs = committed.splitlines(), text.splitlines()
            line = next(
                (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b),
                min(len(mine), len(theirs)),
            )
            where = f"differs from its rendering from line {line + 1}"
        problems.append(
            Problem(
                model,
                file,
                f"{model} [{target}]: {where}: edit {source}, not this file, and run `fleet render`",
            )
        )
    return problems


def _versions(model_dir: Path) -> list[str]:
    """The version folders Triton sees."""
    return sorted(p.name for p in model_dir.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name))


def _parse(path: Path) -> tuple[mc.ModelConfig | None, str | None]:
    """The parsed config, or None and why not."""
    try:
        return parse_config(path), None
    except ConfigError as exc:
        cause = exc.__cause__
        if isinstance(cause, text_format.ParseError) and cause.GetLine() is not None:
            detail = str(cause).split(" : ", 1)[-1]
            return None, f"does not parse: line {cause.GetLine()}, column {cause.GetColumn()}: {detail}"
        return None, f"does not parse: {cause}"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read: {exc}"


def _check_file(model_dir: Path, config: mc.ModelConfig | None, names: set[str]) -> list[str]:
    """Checks of one config file on its own."""
    if config is None:
        return []
    errors = []
    if config.name and config.name != model_dir.name:
        errors.append(f'name "{config.name}" differs from the folder name')
    if not config.backend and not config.platform:
        errors.append("neither backend nor platform is set")
    versions = _versions(model_dir)
    if config.backend == "python" and versions:
        filename = config.default_model_filename or "model.py"
        # A link counts: the LLM-API variant links the image's llmapi model.py (tritonfleet/deploy/llmapi.py).
        if not any(
            (model_dir / v / filename).is_file() or (model_dir / v / filename).is_symlink() for v in versions
        ):
            errors.append(f'backend "python" but no {filename} in version folder(s) {", ".join(versions)}')
    for output in config.output:
        # The name must stay inside the model folder; the file may be a symlink to a shared label file.
        label = Path(os.path.normpath(model_dir / output.label_filename))
        if output.label_filename and not (label.is_relative_to(model_dir) and label.is_file()):
            errors.append(f'output "{output.name}": label file "{output.label_filename}" is missing')
    if config.platform == "ensemble" and not config.ensemble_scheduling.step:
        errors.append("ensemble has no steps")
    if config.platform != "ensemble":  # _check_ensemble reports unknown step models, naming the step
        errors += [f'bls_models names unknown model "{d}"' for d in dependencies(config) if d not in names]
    return errors


def _interface_diff(config: mc.ModelConfig | None, reference: mc.ModelConfig | None) -> list[str]:
    """Where two configs of a model differ in what clients see: tensors, data types, dims, which inputs are
    optional, label files, max_batch_size and whether the model is decoupled (it streams)."""
    if config is None or reference is None:
        return []

    # Tensors a target config adds on purpose (parameter "extra_tensors", comma-separated): optional inputs,
    # and the outputs they ask for. Clients written for the reference target never see them.
    named = config.parameters.get("extra_tensors")  # .get: indexing a protobuf map would insert the key
    extras = {n.strip() for n in named.string_value.split(",") if n.strip()} if named else set()

    def interface(c: mc.ModelConfig) -> dict[str, str]:
        seen = {
            f'input "{t.name}"': f"{_Tensor(t.data_type, tuple(t.dims), False)}{' optional' * t.optional}"
            for t in c.input
            if not (c is config and t.name in extras and t.optional)
        }
        seen |= {
            f'output "{t.name}"': f"{_Tensor(t.data_type, tuple(t.dims), False)}"
            + (f' labels "{t.label_filename}"' if t.label_filename else "")
            for t in c.output
            if not (c is config and t.name in extras)
        }
        return {
            **seen,
            "max_batch_size": str(c.max_batch_size),
            "decoupled (model_transaction_policy)": str(c.model_transaction_policy.decoupled).lower(),
        }

    mine, theirs = interface(config), interface(reference)
    return [
        f"{key}: {mine.get(key, 'absent')} vs {theirs.get(key, 'absent')}"
        for key in sorted(mine.keys() | theirs.keys())
        if mine.get(key) != theirs.get(key)
    ]


def _check_interface(config: mc.ModelConfig | None, configs: dict[str, mc.ModelConfig | None]) -> list[str]:
    """A model whose ``interface`` parameter names another model speaks that model's interface: it has
    every input and output of it, with the same data type, dims and optional flag, and every input it
    adds is optional. So a client written for the other model calls this one unchanged. The tensors the
    other model's config adds for its target alone (``extra_tensors``) are not part of that interface."""
    named = config.parameters.get("interface") if config is not None else None
    if config is None or named is None:
        return []
    other = named.string_value
    if other not in configs:
        return [f'interface names unknown model "{other}"']
    reference = configs[other]
    if reference is None:
        return []

    def tensors(c: mc.ModelConfig, inputs: bool) -> dict[str, tuple[str, bool]]:
        return {
            t.name: (str(_Tensor(t.data_type, tuple(t.dims), False)), bool(inputs and t.optional))
            for t in (c.input if inputs else c.output)
        }

    errors = []
    if config.max_batch_size != reference.max_batch_size:
        errors.append(
            f'max_batch_size {config.max_batch_size} differs from "{other}"\'s {reference.max_batch_size}'
        )
    extra = reference.parameters.get("extra_tensors")  # .get: indexing would insert the key
    target_only = {n.strip() for n in extra.string_value.split(",")} if extra else set()
    for inputs, kind in ((True, "input"), (False, "output")):
        mine, theirs = tensors(config, inputs), tensors(reference, inputs)
        for name, (tensor, optional) in theirs.items():
            if name in target_only and name not in mine:
                continue
            if name not in mine:
                errors.append(f'speaks "{other}" but has no {kind} "{name}"')
            elif mine[name] != (tensor, optional):
                flag = lambda o: " optional" if o else ""  # noqa: E731
                ours = f"{mine[name][0]}{flag(mine[name][1])}"
                errors.append(f'{kind} "{name}" is {ours}, "{other}" has {tensor}{flag(optional)}')
        if inputs:
            errors += [
                f'input "{name}" is not in "{other}", so it must be optional'
                for name, (_, optional) in mine.items()
                if name not in theirs and not optional
            ]
    return errors


def _check_ensemble(ensemble: mc.ModelConfig, configs: dict[str, mc.ModelConfig | None]) -> list[str]:
    """Check an ensemble against its step models' configs (``configs``: all models, None if unparsable)."""
    errors: list[str] = []
    batched = ensemble.max_batch_size > 0

    def ensemble_tensor(io: mc.ModelInput | mc.ModelOutput) -> _Tensor:
        return _Tensor(io.data_type, tuple(io.reshape.shape if io.HasField("reshape") else io.dims), batched)

    declared = {t.name: ensemble_tensor(t) for t in ensemble.output}
    origin = {t.name: "ensemble input" for t in ensemble.input}  # who produces each ensemble tensor
    tensors = {t.name: ensemble_tensor(t) for t in ensemble.input}  # its type, where known
    producer: dict[str, int] = {}  # the step producing it
    steps = list(enumerate(ensemble.ensemble_scheduling.step, 1))

    for i, step in steps:
        label = f"step {i} ({step.model_name})"
        model = configs.get(step.model_name)
        inputs, outputs = _step_tensors(model)
        if step.model_name not in configs:
            errors.append(f'{label}: no model "{step.model_name}" in the repository')
        elif model is not None:
            if 0 < model.max_batch_size < ensemble.max_batch_size:
                sizes = f"{model.max_batch_size} < the ensemble's {ensemble.max_batch_size}"
                errors.append(f"{label}: max_batch_size {sizes}")
            errors += [
                f'{label} input "{key}" <- "{value}": {step.model_name} has no input "{key}"'
                for key, value in sorted(step.input_map.items())
                if key not in inputs
            ]
            errors += [
                f'{label}: required input "{t.name}" is not mapped'
                for t in model.input
                if not t.optional and t.name not in step.input_map
            ]
            errors += [
                f'{label} output "{key}" -> "{value}": {step.model_name} has no output "{key}"'
                for key, value in sorted(step.output_map.items())
                if key not in outputs
            ]
        for key, value in sorted(step.output_map.items()):
            if value in origin:
                where = f'{label} output "{key}" -> "{value}"'
                errors.append(f'{where}: "{value}" is already produced by {origin[value]}')
                continue
            origin[value], producer[value] = f"{label} output", i
            if key not in outputs:
                continue
            tensors[value] = outputs[key]
            if value in declared and (reason := tensors[value].mismatch(declared[value])):
                where = f'{label} output "{key}" -> "{value}"'
                errors.append(f"{where}: {tensors[value]} vs {declared[value]} (ensemble output): {reason}")

    for i, step in steps:
        label = f"step {i} ({step.model_name})"
        inputs, _ = _step_tensors(configs.get(step.model_name))
        for key, value in sorted(step.input_map.items()):
            if value not in origin:
                errors.append(f'{label} input "{key}" <- "{value}": "{value}" is never produced')
                continue
            mine, theirs = inputs.get(key), tensors.get(value)
            if mine is not None and theirs is not None and (reason := mine.mismatch(theirs)):
                where = f'{label} input "{key}" <- "{value}"'
                errors.append(f"{where}: {mine} vs {theirs} ({origin[value]}): {reason}")

    errors += [f'ensemble output "{n}" is not produced by any step' for n in declared if n not in producer]
    # Triton refuses tensors nobody reads, ensemble inputs included, and steps without inputs or outputs.
    used = {value for _, step in steps for value in step.input_map.values()}
    errors += [
        f'ensemble input "{t.name}" is not used by any step' for t in ensemble.input if t.name not in used
    ]
    for i, step in steps:
        label = f"step {i} ({step.model_name})"
        errors += [f"{label}: no {kind}" for kind in ("input_map", "output_map") if not getattr(step, kind)]
        errors += [
            f'{label} output "{key}" -> "{value}": "{value}" is unused (neither an ensemble output nor '
            "a step's input)"
            for key, value in sorted(step.output_map.items())
            if value not in used and value not in declared
        ]

    deps = {i: {producer[v] for v in step.input_map.values() if v in producer} for i, step in steps}
    if cycle := _find_cycle(deps):
        path = " -> ".join(f"step {i} ({steps[i - 1][1].model_name})" for i in reversed(cycle))
        errors.append(f"dataflow cycle: {path}")
    else:
        errors += _check_decoupled_flow(ensemble, steps, configs)
    return errors


def _check_decoupled_flow(
    ensemble: mc.ModelConfig, steps: list[tuple[int, mc.ModelEnsembling.Step]], configs: dict
) -> list[str]:
    """What Triton refuses at load about decoupled steps (core ``ensemble_utils.cc``). Every tensor comes from
    one side of the decoupled steps: a decoupled step's outputs from that step, a non-decoupled step's from
    where its inputs come from, the ensemble's inputs from before any decoupled step. A step's inputs, and the
    ensemble's outputs, must all come from the same side, or the ensemble fails to load ("receives inputs
    originated from different decoupled models")."""
    side = {t.name: _START for t in ensemble.input}  # tensor -> the side it comes from
    errors, pending = [], list(steps)
    while ready := [(i, s) for i, s in pending if all(v in side for v in s.input_map.values())]:
        for i, step in ready:  # dataflow order; steps fed by tensors never produced are reported above
            pending.remove((i, step))
            label = f"step {i} ({step.model_name})"
            sides = {side[v] for v in step.input_map.values()}
            if len(sides) > 1:
                errors.append(f"{label}: inputs {_mixed(step.input_map.values(), side)}")
            own = label if _is_decoupled(step.model_name, configs) else next(iter(sides), _START)
            for value in step.output_map.values():
                side.setdefault(value, own)
    outputs = [t.name for t in ensemble.output if t.name in side]
    if len({side[n] for n in outputs}) > 1:
        errors.append(f"outputs {_mixed(outputs, side)}")
    return errors


_START = "before any decoupled step"


def _mixed(names: Iterable[str], side: dict[str, str]) -> str:
    by_side: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        by_side.setdefault(side[name], []).append(f'"{name}"')
    parts = "; ".join(f"{', '.join(tensors)} from {where}" for where, tensors in sorted(by_side.items()))
    return (
        f"come from both sides of a decoupled step ({parts}): Triton refuses to load that "
        '("receives inputs originated from different decoupled models")'
    )


def _is_decoupled(name: str, configs: dict, seen: frozenset[str] = frozenset()) -> bool:
    """A decoupled model, or an ensemble with a decoupled step (Triton marks such an ensemble decoupled)."""
    config = configs.get(name)
    if config is None or name in seen:
        return False
    steps = [s.model_name for s in config.ensemble_scheduling.step]
    return config.model_transaction_policy.decoupled or any(
        _is_decoupled(s, configs, seen | {name}) for s in steps
    )


def _step_tensors(model: mc.ModelConfig | None) -> tuple[dict[str, _Tensor], dict[str, _Tensor]]:
    """A step model's inputs and outputs by name; none where the model is unknown or does not parse."""
    if model is None:
        return {}, {}
    batched = model.max_batch_size > 0
    inputs = {t.name: _Tensor(t.data_type, tuple(t.dims), batched) for t in model.input}
    return inputs, {t.name: _Tensor(t.data_type, tuple(t.dims), batched) for t in model.output}


def _find_cycle(deps: dict[int, set[int]]) -> list[int]:
    """One cycle in a dependency graph as ``[a, b, ..., a]`` (a needs b ...), or []."""
    done: set[int] = set()
    stack: list[int] = []

    def visit(node: int) -> list[int]:
        stack.append(node)
        for dep in sorted(deps[node]):
            if dep in stack:
                return [*stack[stack.index(dep) :], dep]
            if dep not in done and (cycle := visit(dep)):
                return cycle
        done.add(stack.pop())
        return []

    for node in sorted(deps):
        if node not in done and (cycle := visit(node)):
            return cycle
    return []


def _dims_match(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Same rank, and each dim equal or -1 (any size) on either side."""
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b, strict=True))
