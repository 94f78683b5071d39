"""``fleet``: build, validate, serve, call and benchmark the model fleet.

fleet build [PIPELINE ...] [--target cpu|image|gpu]
fleet render                                    # config.pbtxt + configs/cpu.pbtxt from the interfaces
fleet render --llm-path llmapi --output DIR [--plan NAME]   # the LLM-API variant of the repository
fleet validate [--llm-path engine|llmapi]
fleet plan --gpus SPEC [--name NAME]          # place the fleet on GPUs: configs/NAME.pbtxt + report
fleet deploy k8s --plan reports/plan/NAME.json  # Kubernetes manifests (and KServe) from that plan
fleet serve [--host 127.0.0.1] [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
            [--openai-port 9000] [--models NAME,...]
fleet keys add NAME [--rpm N] [--tpm N] [--admin] [--batch-lines N ...] | list | revoke NAME
fleet batch run PIPELINE INPUT --output OUT | list | status ID | cancel ID | results ID
fleet worker --broker URL --store URL [--triton HOST:PORT]   # a Celery batch worker
fleet stress [--requests 100000]                # fuzz the front door of a fleet of its own
fleet soak [--minutes 30] [--concurrency 16]    # mixed traffic over every pipeline: errors, memory
fleet infer PIPELINE ... [--url URL] [--protocol http|grpc]
fleet bench PIPELINE|fleet|openai|all ... [--url URL]
fleet status [--url localhost:8000]
fleet monitor [--target localhost:8002] [--port 9090]   # Prometheus with the fleet's rules
fleet pipelines [NAME]                          # each pipeline's models, recipes, helpers, commands, files

The pipelines and their ``infer`` / ``bench`` arguments come from their declarations
(``tritonfleet.pipelines``). The benchmarks, ``stress`` and ``soak`` are the ``tools`` extra's
(``tritonfleet.tools``, each pipeline's ``bench``): imported when they run.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tritonfleet import artifacts, defaults, pipelines, status
from tritonfleet.batch import jobs as batch_jobs
from tritonfleet.batch.config import BatchConfig
from tritonfleet.benches import BENCHES
from tritonfleet.clients.fleet import _auth
from tritonfleet.deploy import command as deploy_command
from tritonfleet.deploy import gpubuild
from tritonfleet.deploy import llmapi as llmapi_variant
from tritonfleet.fleet import Fleet, FleetError, internal_url
from tritonfleet.frontdoor.keys import KeyFile, KeysError, home
from tritonfleet.frontdoor.validation import Limits
from tritonfleet.monitoring.prometheus import Prometheus, PrometheusError
from tritonfleet.pipelines import layout
from tritonfleet.pipelines.loading import missing_artifacts, models_to_load
from tritonfleet.plan import command as plan_command
from tritonfleet.repository import Repository
from tritonfleet.server import ServerError
from tritonfleet.spec.config import rendered, write
from tritonfleet.tune import command as tune_command
from tritonfleet.validate import validate_repository

console = Console(highlight=False)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fleet", description=__doc__.split("\n")[0])
    p.add_argument("--repository", type=Path, default=artifacts.REPOSITORY, help="model repository")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    names = sorted(pipelines.registry())
    b = sub.add_parser("build", help="build serving artifacts (cached by content hash)")
    b.add_argument("pipelines", nargs="*", metavar="PIPELINE", help=f"default all: {', '.join(names)}")
    b.add_argument(
        "--target",
        choices=["cpu", "image", "gpu"],
        default="cpu",
        help="cpu: what fleet serve needs; image: the GPU image's export stage; gpu: image + TensorRT plans",
    )
    for option in pipelines.build_options().values():
        b.add_argument(
            f"--{option.name}",
            dest=f"option_{option.name}",
            help=f"{option.help} (default: {option.default})",
        )
    b.set_defaults(handler=cmd_build)

    rn = sub.add_parser(
        "render", help="write every model's configs from its interface (pipelines/*/interface.py)"
    )
    rn.add_argument(
        "--llm-path", choices=llmapi_variant.LLM_PATHS, default=llmapi_variant.ENGINE,
        help="engine: the repository itself; llmapi: its LLM-API variant, written to --output",
    )  # fmt: skip
    rn.add_argument("--output", type=Path, help="--llm-path llmapi: the variant's folder (emptied first)")
    rn.add_argument(
        "--plan", help="--llm-path llmapi: the plan (fleet plan --name) whose KV cap model.yaml takes"
    )
    rn.add_argument(
        "--llmapi-dir", default=llmapi_variant.llmapi.IMAGE_LLMAPI_DIR,
        help="--llm-path llmapi: where NVIDIA's llmapi model.py and helpers.py are (the image's copy)",
    )  # fmt: skip
    rn.set_defaults(handler=cmd_render)

    v = sub.add_parser("validate", help="check every config against Triton's schema and ensemble wiring")
    v.add_argument(
        "--llm-path", choices=llmapi_variant.LLM_PATHS, default=llmapi_variant.ENGINE,
        help="llmapi: --repository is an LLM-API variant (fleet render --llm-path llmapi)",
    )  # fmt: skip
    v.set_defaults(handler=cmd_validate)

    pl = sub.add_parser("plan", help="pack the fleet onto GPUs: planned configs, report, Kubernetes requests")
    plan_command.add_arguments(pl)
    pl.set_defaults(handler=lambda args: plan_command.run(args, console))

    tu = sub.add_parser("tune", help="Model Analyzer's search on the real server: the model's tuning record")
    tune_command.add_arguments(tu)
    tu.set_defaults(handler=lambda args: tune_command.run(args, console))

    dp = sub.add_parser("deploy", help="Kubernetes manifests from a plan; calibration inputs for TensorRT")
    deploy_command.add_arguments(dp)
    dp.set_defaults(handler=lambda args: deploy_command.run(args, console))

    s = sub.add_parser("serve", help="serve the fleet: tritonserver behind the front door, supervised")
    s.add_argument("--target", choices=["cpu", "gpu"], default="cpu")
    s.add_argument(
        "--host", default="127.0.0.1", help="the front door's address (other than localhost needs keys)"
    )
    s.add_argument("--http-port", type=int, default=defaults.HTTP_PORT)
    s.add_argument("--grpc-port", type=int, default=defaults.GRPC_PORT)
    s.add_argument("--metrics-port", type=int, default=defaults.METRICS_PORT)
    s.add_argument(
        "--openai-port",
        type=int,
        default=defaults.OPENAI_PORT,
        help="OpenAI-compatible API (/v1) on this port; 0: none",
    )
    s.add_argument(
        "--openai-max-tokens", type=int, help="/v1 budget of a request giving none (default: context left)"
    )
    s.add_argument(
        "--models",
        type=pipelines.names,
        help="comma-separated pipelines or models to load (plus their steps)",
    )
    s.add_argument("--keys", type=Path, help="API keys file (default $TRITONFLEET_HOME/keys.json)")
    s.add_argument(
        "--insecure", action="store_true", help="serve a non-local address without API keys (not advised)"
    )
    s.add_argument(
        "--max-body-mb", type=int, default=defaults.MAX_BODY_MB, help="largest request body accepted"
    )
    s.add_argument(
        "--probe-interval",
        type=float,
        default=defaults.PROBE_INTERVAL_S,
        help="seconds between pipeline probes",
    )
    s.add_argument(
        "--batch-store", help="batch store URL (default sqlite in $TRITONFLEET_HOME; postgresql://...)"
    )
    s.add_argument(
        "--batch-broker", help="wake `fleet worker` processes through this broker (no worker here)"
    )
    s.add_argument(
        "--grpc-transport",
        choices=["auto", "native", "aio"],
        default="auto",
        help="the front door's gRPC transport: native (C++, built at set-up) or aio; auto: native if built",
    )
    s.add_argument("--verbose", action="store_true", help="stream the server log to the console")
    s.add_argument(
        "--tritonserver", type=Path, help="run this tritonserver (the GPU image's) instead of the bundled one"
    )
    s.add_argument("server_args", nargs="*", metavar="-- TRITONSERVER_ARG", help="passed on to tritonserver")
    s.add_argument(
        "--prometheus", action="store_true", help="also run Prometheus on the metrics port (rules)"
    )
    s.add_argument("--prometheus-port", type=int, default=9090, help="Prometheus' port on 127.0.0.1")
    s.set_defaults(handler=cmd_serve)

    mo = sub.add_parser(
        "monitor", help="Prometheus on a running fleet's metrics port, with the fleet's rules"
    )
    mo.add_argument(
        "--target", type=pipelines.names, default=["localhost:8002"], help="metrics ports, comma-separated"
    )
    mo.add_argument("--port", type=int, default=9090, help="Prometheus' port on 127.0.0.1")
    mo.add_argument("--interval", default="15s", help="scrape and rule evaluation interval")
    mo.add_argument("--storage", type=Path, help="its data (default $TRITONFLEET_HOME/prometheus)")
    mo.set_defaults(handler=cmd_monitor)

    st = sub.add_parser("status", help="what a running server serves: models, load, memory (like ollama ps)")
    st.add_argument("--url", default=defaults.HTTP_URL, help="the server's HTTP address")
    st.set_defaults(handler=cmd_status)

    pl = sub.add_parser(
        "pipelines", help="each pipeline's models, recipes, client helpers, commands and files"
    )
    pl.add_argument("name", nargs="?", choices=names, metavar="NAME", help=f"one of {', '.join(names)}")
    pl.set_defaults(handler=cmd_pipelines)

    k = sub.add_parser("keys", help="API keys of the front door (hashed in $TRITONFLEET_HOME/keys.json)")
    k.add_argument("--keys", type=Path, help="keys file (default $TRITONFLEET_HOME/keys.json)")
    ksub = k.add_subparsers(required=True, metavar="ACTION")
    ka = ksub.add_parser("add", help="make a key and print it (once)")
    ka.add_argument("name")
    ka.add_argument("--rpm", type=int, default=0, help="requests per minute (0: no limit)")
    ka.add_argument("--tpm", type=int, default=0, help="tokens per minute on /v1 (0: no limit)")
    ka.add_argument("--admin", action="store_true", help="may use the admin APIs")
    ka.add_argument("--batch-lines", type=int, default=0, help="lines a batch (0: the fleet's default)")
    ka.add_argument("--batch-file-mb", type=int, default=0, help="largest batch input file (0: default)")
    ka.add_argument("--batches", type=int, default=0, help="batches in flight (0: the fleet's default)")
    ka.set_defaults(handler=cmd_keys_add)
    ksub.add_parser("list", help="the keys (names and limits; never the keys)").set_defaults(
        handler=cmd_keys_list
    )
    kr = ksub.add_parser("revoke", help="remove a key (a running server stops accepting it)")
    kr.add_argument("name")
    kr.set_defaults(handler=cmd_keys_revoke)

    ba = sub.add_parser(
        "batch", help="batch jobs: run a file through a pipeline; list, status, cancel, results"
    )
    batch_jobs.add_arguments(ba, console)
    wk = sub.add_parser("worker", help="a Celery batch worker: lines from --store, woken through --broker")
    batch_jobs.add_worker_arguments(wk)
    wk.set_defaults(handler=batch_jobs.worker)

    fz = sub.add_parser("stress", help="fuzz the front door of a fleet of its own (malformed requests)")
    fz.add_argument("--requests", type=int, default=100_000, help="malformed requests in all (0.6 HTTP)")
    fz.add_argument("--seed", type=int, default=1)
    fz.add_argument("--memory-gb", type=float, default=12.0, help="tritonserver's memory cap (RLIMIT_DATA)")
    fz.add_argument("--models", type=pipelines.names, help="pipelines to serve (default: all)")
    fz.set_defaults(handler=cmd_stress)

    so = sub.add_parser("soak", help="mixed traffic over every pipeline through the front door")
    so.add_argument("--minutes", type=float, default=30.0)
    so.add_argument("--concurrency", type=int, default=16)
    so.add_argument("--output", type=Path, default=Path("reports"))
    so.set_defaults(handler=cmd_soak)

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--url", help=f"server address (default {defaults.HTTP_URL} for http, {defaults.GRPC_URL} for grpc)"
    )
    client.add_argument("--protocol", choices=["http", "grpc"], default="http")
    i = sub.add_parser("infer", help="call a pipeline and print the result")
    per_pipeline = i.add_subparsers(required=True, metavar="PIPELINE")
    for pipe in pipelines.registry().values():
        if pipe.infer is not None:
            sp = per_pipeline.add_parser(pipe.name, help=pipe.infer.help, parents=[client])
            pipe.infer.arguments(sp)
            sp.set_defaults(handler=_run(pipe.infer))

    bench = argparse.ArgumentParser(add_help=False)
    bench.add_argument("--url", help="benchmark a running server's gRPC endpoint instead of starting one")
    bench.add_argument("--output", type=Path, default=Path("reports"))
    r = sub.add_parser("bench", help="a served pipeline against its baseline, side by side in one run")
    per_pipeline = r.add_subparsers(required=True, metavar="PIPELINE|BENCH")
    benched = {p.name: p.bench for p in pipelines.registry().values() if p.bench is not None} | BENCHES
    for name, command in benched.items():
        sp = per_pipeline.add_parser(name, help=command.help, parents=[bench])
        command.arguments(sp)
        sp.set_defaults(handler=_run(command))
    every = per_pipeline.add_parser(
        "all", help="every pipeline's benchmark with its defaults", parents=[bench]
    )
    every.set_defaults(handler=lambda args: _bench_all(args, benched))
    return p


def _run(command: pipelines.Command) -> Callable[[argparse.Namespace], int]:
    return lambda args: command.run(args, console)


def _bench_all(args: argparse.Namespace, benched: dict[str, pipelines.Command]) -> int:
    for command in benched.values():
        sub = argparse.ArgumentParser()
        command.arguments(sub)
        defaults = sub.parse_args([])
        code = command.run(argparse.Namespace(**{**vars(defaults), **vars(args)}), console)
        if code:
            return code
    return 0


def _absolute(paths: str) -> str:
    """Comma-separated paths (globs too) made absolute against the working directory."""
    return ",".join(str(Path(p.strip()).expanduser().absolute()) for p in paths.split(",") if p.strip())


def cmd_build(args: argparse.Namespace) -> int:
    try:
        recipes = pipelines.recipes(args.target, args.pipelines)
    except KeyError as exc:
        console.print(f"[red]✗[/] {exc.args[0]}")
        return 2
    options = {}
    for option in pipelines.build_options().values():
        value = getattr(args, f"option_{option.name}", None)
        if value is not None:  # files given on the command line are relative to where it runs
            options[option.name] = _absolute(value) if option.files else value
    exact = lambda text: console.print(text, soft_wrap=True, markup=False, highlight=False)  # noqa: E731
    if args.target == "gpu" and (code := gpubuild.gate(args.repository, args.pipelines, exact)):
        return code
    for recipe in recipes:
        label = f"{', '.join(recipe.models)}: {len(recipe.outputs)} file(s) for {args.target}"
        start = time.monotonic()
        with console.status(f"[bold]building[/] {label} with {recipe.script}"):
            try:
                state = artifacts.build(
                    recipe, args.repository, lambda line: console.print(f"  [dim]$ {line}[/]"), options
                )
            except artifacts.BuildError as exc:
                console.print(f"[red]✗[/] {label}\n{exc}")
                return 1
        console.print(f"[green]✓[/] {label}: {state} in {time.monotonic() - start:.1f}s")
    if args.target == "gpu":
        return gpubuild.build_engines(args.repository, args.pipelines, exact)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    if args.llm_path == llmapi_variant.LLMAPI:
        if args.output is None:
            console.print("[red]✗[/] --llm-path llmapi writes a repository of its own: give --output DIR")
            return 2
        try:
            models = llmapi_variant.write_variant(
                args.repository, args.output, plan=args.plan, llmapi_dir=args.llmapi_dir
            )
        except ValueError as exc:
            console.print(f"[red]✗[/] {exc}")
            return 2
        console.print(
            f"[green]✓[/] LLM-API variant of {args.repository}: {len(models)} models in {args.output}"
        )
        missing = [n for n in llmapi_variant.llmapi.LLMAPI_FILES if not (Path(args.llmapi_dir) / n).is_file()]
        if missing:
            console.print(
                f"  [yellow]![/] {args.llmapi_dir} has no {', '.join(missing)} here (the image has)"
            )
        return 0
    changed = write(args.repository)
    for name in changed:
        console.print(f"[green]✓[/] {'wrote' if (args.repository / name).is_file() else 'removed'} {name}")
    files = sum(text is not None for text in rendered().values())
    console.print(f"{len(changed)} of {files} config file(s) changed in {args.repository}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    llmapi = args.llm_path == llmapi_variant.LLMAPI
    problems = validate_repository(args.repository, llmapi_variant.variant_models() if llmapi else None)
    for problem in problems:
        console.print(f"[red]✗[/] {problem}")
    count = len(Repository(args.repository).names())
    if problems:
        console.print(f"{len(problems)} problem(s) in {args.repository}")
        return 1
    console.print(f"[green]✓[/] {count} models valid in {args.repository} (gpu and cpu configs)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.target == "gpu" and not args.tritonserver:
        console.print("[red]✗[/] the GPU target runs in the NGC image: see `docker/Dockerfile`")
        return 2
    models = models_to_load(args.repository, args.models, args.target)
    missing = missing_artifacts(args.repository, models, args.target)
    if missing:
        console.print("[red]✗[/] missing artifacts:\n  " + "\n  ".join(missing))
        return 1
    log = None if args.verbose else artifacts.cache_root() / "logs" / "tritonserver.log"
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    body = args.max_body_mb << 20
    fleet = Fleet(
        args.repository,
        models=args.models,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        keys_path=args.keys,
        insecure=args.insecure,
        limits=Limits(max_body_bytes=body, max_tensor_bytes=body),
        log=log,
        probe_interval=args.probe_interval,
        say=lambda line: console.print(f"[dim]{line}[/]"),
        target=args.target,
        server_args={"binary": args.tritonserver, "extra_args": args.server_args},
        openai_port=args.openai_port or None,
        openai_max_tokens=args.openai_max_tokens,
        grpc_transport=args.grpc_transport,
        batch=BatchConfig.from_env(store=args.batch_store, broker=args.batch_broker),
    )
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        fleet.check_secure()
    except FleetError as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    with console.status(f"starting tritonserver with {len(models)} models behind the front door"):
        try:
            fleet.start()
        except (ServerError, FleetError, OSError, RuntimeError) as exc:
            console.print(f"[red]✗[/] {exc}")
            return 1
    prometheus = None
    try:
        if args.prometheus:
            prometheus = _prometheus(args.repository, [fleet.metrics_url.split("/")[2]], args.prometheus_port)
            if prometheus is None:
                return 1
        console.print(f"[green]✓[/] serving {len(models)} models: {', '.join(models)}")
        console.print(f"  public  {', '.join(fleet.public)}")
        console.print(f"  HTTP    http://{fleet.http_url}   (KServe v2: /v2/models/<name>/infer)")
        assert fleet.door is not None
        console.print(f"  gRPC    {fleet.grpc_url}   ({fleet.door.transport} transport)")
        console.print(f"  metrics {fleet.metrics_url}")
        if fleet.console_url:
            console.print(f"  console [bold]{fleet.console_url}[/]   (chat, playgrounds, live charts)")
        if fleet.openai_url:
            key = "<key>" if fleet.keys.enabled else "none"
            console.print(
                f'  OpenAI  {fleet.openai_url}   (OpenAI(base_url="{fleet.openai_url}", api_key="{key}"))'
            )
        if prometheus is not None:
            console.print(f"  Prometheus {prometheus.url}   (rules and alerts: {prometheus.url}/alerts)")
        if fleet.keys.enabled:
            console.print(f"  keys    {fleet.keys.file.path} (send Authorization: Bearer <key>)")
        elif fleet.insecure:
            console.print(f"  [yellow]no API keys: anyone who reaches {args.host} may call the fleet[/]")
        else:
            console.print(
                f"  no API keys: listening on {args.host} only (`fleet keys add NAME` to serve other hosts)"
            )
        if log:
            console.print(f"  log     {log}")
        console.print("Ctrl-C stops the server and every model process.")
        signal.pause() if hasattr(signal, "pause") else time.sleep(1e9)
        return 0
    except KeyboardInterrupt:
        console.print("stopping ...")
        return 0
    finally:
        if prometheus is not None:
            prometheus.stop()
        fleet.stop()


def _prometheus(
    repository: Path, targets: list[str], port: int, storage: Path | None = None, interval: str = "15s"
) -> Any:
    """Prometheus on 127.0.0.1:``port`` scraping ``targets`` with the fleet's rules, started; None (said why)
    when it cannot start."""
    log = artifacts.cache_root() / "logs" / "prometheus.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    storage = storage or home() / "prometheus"
    try:
        return Prometheus(targets, repository, port=port, storage=storage, interval=interval, log=log).start()
    except PrometheusError as exc:
        console.print(f"[red]✗[/] {exc}")
        return None


def cmd_monitor(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    prometheus = _prometheus(args.repository, args.target, args.port, args.storage, args.interval)
    if prometheus is None:
        return 1
    try:
        console.print(
            f"[green]✓[/] Prometheus {prometheus.url} scraping {', '.join(args.target)} every {args.interval}"
        )
        console.print(
            f"  alerts  {prometheus.url}/alerts   dashboard: docker/monitoring/dashboard.json (Grafana)"
        )
        console.print("Ctrl-C stops it.")
        signal.pause() if hasattr(signal, "pause") else time.sleep(1e9)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        prometheus.stop()


def _own_fleet(args: argparse.Namespace, **kwargs: object) -> Fleet:
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="fleet-"))
    return Fleet.on_free_ports(
        args.repository,
        keys_path=work / "keys.json",
        log=work / "tritonserver.log",
        probe_interval=3600,
        **kwargs,
    )


def cmd_stress(args: argparse.Namespace) -> int:
    from tritonfleet.tools import stress  # the tools extra

    fleet = _own_fleet(args, models=args.models, memory_limit=int(args.memory_gb * (1 << 30)))
    with console.status("starting a fleet of its own"):
        fleet.start()
    try:
        stubs = fleet.server.stub_pids()
        http_count = int(args.requests * 0.6)
        with console.status(f"{args.requests} malformed requests at {fleet.http_url} / {fleet.grpc_url}"):
            result = stress.run(
                fleet.http_url,
                fleet.grpc_url,
                list(fleet.access.public.models.values()),
                http_count=http_count,
                grpc_count=args.requests - http_count,
                seed=args.seed,
            )
        alive = fleet.server.process is not None and fleet.server.process.poll() is None
        same = fleet.server.stub_pids() == stubs
        for (family, answer), n in sorted(result.answers.items()):
            console.print(f"  {n:7d}  {answer:18} {family}")
        console.print(f"{result.sent} sent; server alive: {alive}; model processes unchanged: {same}")
        for failure in result.failures:
            console.print(f"[red]✗[/] {failure}")
        return 0 if alive and same and not result.failures else 1
    finally:
        fleet.stop()


def cmd_soak(args: argparse.Namespace) -> int:
    import json

    from tritonfleet.tools import soak  # the tools extra
    from tritonfleet.tools.bench import report

    fleet = _own_fleet(args)
    with console.status("starting the fleet"):
        fleet.start()
    try:
        with console.status(f"{args.minutes} min of mixed traffic, concurrency {args.concurrency}"):
            result = soak.run(fleet, minutes=args.minutes, concurrency=args.concurrency)
    finally:
        fleet.stop()
    result["machine"] = report.machine()
    growth = result["memory_growth"] or 0.0
    warm, end = result["pss_mb_after_warmup"] or 0.0, result["pss_mb_end"] or 0.0
    lines = [
        f"# Soak: {args.minutes} min, concurrency {args.concurrency}",
        f"{result['machine']['date']}, {result['machine']['cpu']} ({result['machine']['cores']} cores).",
        "",
        f"requests {result['requests']} ({json.dumps(result['by_pipeline'])}), "
        f"errors **{result['errors']}**, "
        f"memory (PSS of tritonserver + stubs) {warm:.0f} MB after warm-up, {end:.0f} MB at the end: growth "
        f"**{growth * 100:+.1f}%** (target < {soak.TARGET_GROWTH * 100:.0f}%).",
        "",
        "PSS over the run (s: MB): "
        + ", ".join(f"{t}: {mb:.0f}" for t, mb in result["pss_mb_samples"] if mb is not None),
        "",
        "| process | MB after warm-up | MB at the end | growth MB |",
        "| --- | --- | --- | --- |",
        *(
            f"| {name} | {p['warm'] or 0:.0f} | {p['end']:.0f} | {p['growth_mb']:+.1f} |"
            for name, p in sorted(result["pss_mb_by_process"].items(), key=lambda kv: -kv[1]["growth_mb"])
        ),
    ]
    path = report.write(args.output, "soak", result, "\n".join(lines) + "\n")
    console.print("\n".join(lines[2:]))
    console.print(f"[green]✓[/] report: {path}")
    ok = result["errors"] == 0 and growth < soak.TARGET_GROWTH
    return 0 if ok else 1


def cmd_keys_add(args: argparse.Namespace) -> int:
    try:
        secret = KeyFile(args.keys).add(
            args.name, rpm=args.rpm, tpm=args.tpm, admin=args.admin,
            batch_lines=args.batch_lines, batch_file_mb=args.batch_file_mb, batches=args.batches,
        )  # fmt: skip
    except KeysError as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    print(secret)
    console.print(f"[dim]key {args.name!r} added; it is shown this once (clients: TRITONFLEET_API_KEY)[/]")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    keys = KeyFile(args.keys).load()
    if not keys:
        console.print(f"no keys in {KeyFile(args.keys).path}")
    for k in keys:
        limits = f"rpm {k.rpm or '-'}  tpm {k.tpm or '-'}"
        console.print(f"{k.name:24} {limits:24} {'admin' if k.admin else '':6} {k.created}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    try:
        KeyFile(args.keys).revoke(args.name)
    except KeysError as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    console.print(f"key {args.name!r} revoked")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        # A local fleet serve: its tritonserver's internal port (no key). Elsewhere: an admin key.
        fleet = status.collect(internal_url(args.url), headers=_auth(None))
    except Exception as exc:  # connection refused, HTTP errors: say which server and why
        console.print(f"[red]✗[/] no status from {args.url}: {exc}")
        return 1
    table = Table(box=None, header_style="bold")
    for column in ("MODEL", "STATE", "INSTANCES", "EXECUTIONS", "INFERENCES", "AVG BATCH", "QUEUE ms"):
        table.add_column(column, justify="left" if column in ("MODEL", "STATE") else "right")
    table.add_column("COMPUTE ms", justify="right")
    table.add_column("MEMORY (PSS)", justify="right")
    for m in fleet.models:
        memory = "" if m.pss_mb is None or not m.instances else f"{m.pss_mb:.0f} MB"
        table.add_row(
            m.name,
            m.state,
            "ensemble" if m.instances is None else str(m.instances or "-"),
            str(m.executions),
            str(m.inferences),
            f"{m.avg_batch:.1f}",
            f"{m.queue_ms:.2f}",
            f"{m.compute_ms:.2f}",
            memory,
        )
    console.print(table)
    if fleet.total_pss_mb is not None:
        console.print(
            f"tritonserver (pid {fleet.server_pid}) {fleet.server_pss_mb:.0f} MB + stubs: "
            f"[bold]{fleet.total_pss_mb / 1024:.2f} GB[/] in all (PSS)"
        )
    return 0


def cmd_pipelines(args: argparse.Namespace) -> int:
    chosen = [pipelines.get(args.name)] if args.name else list(pipelines.registry().values())
    for pipeline in chosen:
        found = layout.describe(pipeline, args.repository)
        console.print(f"[bold]{pipeline.name}[/]: {pipeline.summary}", soft_wrap=True)
        for label, items in found.items():
            for i, item in enumerate(items):
                console.print(f"  {label if i == 0 else '':12} {item}", soft_wrap=True, markup=False)
        if args.name is None and pipeline is not chosen[-1]:
            console.print()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
