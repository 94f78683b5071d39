"""``fleet tune MODEL [--target cpu|NAME] [--gpu GPU]``: Model Analyzer's search on the real server, the
chosen settings as the model's tuning record.

1. The server: the CPU target's embedded tritonserver (``--model-config-name=cpu``), or for a plan NAME the
   GPU image's ``tritonserver --model-config-name=NAME``; explicit model control, the model and what it
   calls loaded, on free ports of 127.0.0.1.
2. The view (tritonfleet/tune/view.py) and Model Analyzer's profile in remote mode over the search
   (tritonfleet/tune/analyzer.py), perf_analyzer fed the pipeline's real inputs where it declares them.
3. The choice: the most throughput (within ``--latency-budget-ms`` when given); the record
   ``model_repository/<model>/tuning/<target>.json`` holds its instances, batcher settings, throughput per
   instance and p99 (tritonfleet/spec/tuning.py). For the CPU target ``fleet render`` then writes them into
   ``configs/cpu.pbtxt``; for a GPU, ``fleet plan`` reads the record of that GPU kind.
4. The report: ``<output>/<model>-<target>.{json,md}``, every measurement with the chosen one marked; beside
   it ``<model>-<target>.work/``: the view, Model Analyzer's config, its log, the server's log, its export.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from tritonclient.grpc import model_config_pb2 as mc

from tritonfleet.plan import gpus
from tritonfleet.repository import dependencies, parse_config
from tritonfleet.server import TritonServer
from tritonfleet.spec import config as spec_config
from tritonfleet.spec import least_instances, tuning
from tritonfleet.tune import analyzer, inputs, view

CPU = "cpu"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the model to tune (a folder of the repository)")
    p.add_argument("--target", default=CPU, help="cpu, or a plan's config name (configs/NAME.pbtxt) on a GPU")
    p.add_argument("--gpu", help="for a plan NAME: the GPU kind of the record (the table's name: L4, ...)")
    p.add_argument("--tritonserver", type=Path, help="for a plan NAME: the GPU image's tritonserver binary")
    search = analyzer.Search()
    p.add_argument("--instances", type=_ints, default=search.instances, help="instance counts to try")
    p.add_argument("--queue-delays", type=_ints, default=search.queue_delays_us, help="µs, batcher models")
    p.add_argument("--batch-sizes", type=_ints, default=search.batch_sizes, help="client batch sizes")
    p.add_argument("--concurrency", type=_ints, default=search.concurrency)
    p.add_argument("--measurement-ms", type=int, default=search.measurement_ms)
    p.add_argument("--latency-budget-ms", type=float, help="choose within this p99")
    p.add_argument("--output", type=Path, default=Path("reports/tune"), help="folder for the report")


def refusal(config: mc.ModelConfig) -> str | None:
    """Why Model Analyzer's manual search cannot tune the model served with ``config``; None when it can.

    An ensemble or a BLS model has no instances of its own worth searching (its steps do the work: tune
    them), and Model Analyzer profiles them only in its quick search, which also varies ``max_batch_size``,
    the interface. A decoupled model (the LLM) streams: perf_analyzer's throughput per request says nothing
    of tokens (``fleet bench llm`` measures it with genai-perf)."""
    steps = dependencies(config)
    if steps:
        kind = "an ensemble" if config.platform == "ensemble" else "a BLS model"
        return f"{config.name} is {kind}: tune what it calls ({', '.join(steps)})"
    if config.model_transaction_policy.decoupled:
        return f"{config.name} is decoupled (it streams): fleet bench llm measures it"
    return None


def run(args: argparse.Namespace, console: Console) -> int:
    repository = Path(args.repository).resolve()
    if not (repository / args.model / "config.pbtxt").is_file():
        console.print(f"[red]✗[/] no model {args.model!r} in {repository}")
        return 2
    served_file = view.target_config(repository / args.model, args.target)
    served = parse_config(served_file)
    why = refusal(served)
    if why:
        console.print(f"[red]✗[/] {why}")
        return 2
    batcher, policy = served.dynamic_batching, served.model_transaction_policy
    least = least_instances(batcher.priority_levels, policy.decoupled)
    if least > 1:
        console.print(f"  {args.model}'s batcher has priority levels: {least} instances or more")
    args.instances = tuple(n for n in args.instances if n >= least) or (least,)
    gpu_target = args.target != CPU
    if gpu_target and not args.gpu:
        console.print(
            "[red]✗[/] --target NAME needs --gpu (the GPU kind the record is for: L4, A100-40GB, ...)"
        )
        return 2
    if gpu_target:
        try:
            args.gpu = gpus.lookup(args.gpu).name  # the record's target: the table's name (L4, A100-40GB)
        except KeyError as exc:
            console.print(f"[red]✗[/] --gpu: {exc.args[0]}")
            return 2
    if gpu_target and not (repository / args.model / "configs" / f"{args.target}.pbtxt").is_file():
        console.print(f"[red]✗[/] no configs/{args.target}.pbtxt for {args.model}: run fleet plan first")
        return 2
    binary = args.tritonserver or (Path(shutil.which("tritonserver") or "") if gpu_target else None)
    if gpu_target and not (binary and binary.is_file()):
        console.print("[red]✗[/] the GPU target needs the image's tritonserver (--tritonserver PATH)")
        return 2
    search = analyzer.Search(
        instances=args.instances, queue_delays_us=args.queue_delays, batch_sizes=args.batch_sizes,
        concurrency=args.concurrency, measurement_ms=args.measurement_ms,
    )  # fmt: skip
    record, found, chosen = tune(
        repository, args.model, args.target, search, console,
        gpu=args.gpu, binary=binary, latency_budget_ms=args.latency_budget_ms,
        work=args.output / f"{args.model}-{args.target}.work",
    )  # fmt: skip
    path = tuning.write(repository / args.model, record)
    console.print(
        f"[green]✓[/] {args.model} \\[{record.target}]: {record.instances} instance(s)"
        + (f", queue delay {chosen.max_queue_delay_us} µs" if chosen.max_queue_delay_us is not None else "")
        + f": {chosen.throughput:.1f} infer/s at concurrency {chosen.concurrency} (p99 "
        f"{chosen.latency_p99_ms:.1f} ms), {record.throughput_per_instance:.1f} per instance -> {path}"
    )
    if not gpu_target:
        changed = spec_config.write(repository)
        console.print(f"  fleet render: {', '.join(changed) or 'no config changed'}")
    write_report(args.output, record, found, chosen)
    return 0


def tune(
    repository: Path,
    model: str,
    target: str,
    search: analyzer.Search,
    console: Console,
    *,
    gpu: str | None = None,
    binary: Path | None = None,
    latency_budget_ms: float | None = None,
    work: Path | None = None,
) -> tuple[tuning.Record, list[analyzer.Measurement], analyzer.Measurement]:
    """Search ``model`` on ``target``'s real server; the record of the choice, every measurement, the
    choice. ``work``: the folder for the view, Model Analyzer's config, logs and export (kept; by default a
    temporary one)."""
    script = analyzer.venv()
    cpu_only = target == CPU
    with tempfile.TemporaryDirectory(prefix="fleet-tune-") as tmp:
        work = work or Path(tmp)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        view.make(repository, model, target, work / "view")
        served = parse_config(work / "view" / model / "config.pbtxt")
        data = inputs.write(model, repository, work / "input.json")
        extra = [] if cpu_only else [f"--model-config-name={target}"]
        server = TritonServer.on_free_ports(
            repository, models=[model], target=CPU if cpu_only else "gpu", log=work / "server.log",
            extra_args=extra, binary=binary, address="127.0.0.1",
        )  # fmt: skip
        with console.status(f"{model}: Model Analyzer over {_size(search, served)} measurements"), server:
            config = analyzer.profile_config(
                model, served, view=work / "view", workdir=work, grpc_url=server.grpc_url,
                http_url=server.http_url, metrics_url=server.metrics_url, search=search, input_data=data,
                cpu_only=cpu_only,
            )  # fmt: skip
            analyzer.run(script, config, work, work / "model-analyzer.log")
        found = analyzer.measurements(work)
    chosen = analyzer.choose(found, latency_budget_ms)
    record = tuning.Record(
        model=model,
        target=CPU if cpu_only else str(gpu),
        instances=chosen.instances,
        throughput_per_instance=chosen.throughput / chosen.instances,
        measured_at=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        tool=f"model-analyzer {analyzer.VERSION}",
        preferred_batch_size=chosen.preferred_batch_size,
        max_queue_delay_microseconds=chosen.max_queue_delay_us,
        latency_p99_ms=chosen.latency_p99_ms,
    )
    return record, found, chosen


def _size(search: analyzer.Search, config: mc.ModelConfig) -> int:
    delays = len(search.queue_delays_us) if config.HasField("dynamic_batching") else 1
    return len(search.instances) * delays * len(search.batch_sizes) * len(search.concurrency)


def write_report(
    output: Path, record: tuning.Record, found: list[analyzer.Measurement], chosen: analyzer.Measurement
) -> list[Path]:
    """``<model>-<target>.json`` and ``.md``: every measurement, the chosen one marked."""
    output.mkdir(parents=True, exist_ok=True)
    stem = output / f"{record.model}-{tuning.target_key(record.target)}"
    rows = [{**m.__dict__, "chosen": m == chosen} for m in found]
    (stem.with_suffix(".json")).write_text(
        json.dumps({"record": tuning.to_json(record), "measurements": rows}, indent=2, default=list) + "\n"
    )
    lines = [
        f"# fleet tune {record.model} --target {record.target}",
        "",
        f"Measured {record.measured_at} with {record.tool} (remote mode, perf_analyzer 2.51.0); preliminary "
        "figures on a shared machine: compare rows of this run only.",
        "",
        "| variant | instances | queue delay µs | batch | concurrency | infer/s | p99 ms | chosen |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in sorted(found, key=lambda m: (m.variant, m.batch_size, m.concurrency)):
        delay = "-" if m.max_queue_delay_us is None else str(m.max_queue_delay_us)
        lines.append(
            f"| {m.variant} | {m.instances} | {delay} | {m.batch_size} | {m.concurrency} | "
            f"{m.throughput:.1f} | {m.latency_p99_ms:.1f} | {'**yes**' if m == chosen else ''} |"
        )
    (stem.with_suffix(".md")).write_text("\n".join(lines) + "\n")
    return [stem.with_suffix(".json"), stem.with_suffix(".md")]
