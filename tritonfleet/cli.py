"""``fleet``: build, validate, serve, call and benchmark the model fleet.

fleet build [PIPELINE ...] [--target cpu|image|gpu]
fleet validate
fleet serve [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002] [--openai-port 9000]
            [--models NAME,...]
fleet infer PIPELINE ... [--url URL] [--protocol http|grpc]
fleet bench PIPELINE|fleet|openai|all ... [--url URL]
fleet status [--url localhost:8000]

The pipelines and their ``infer`` / ``bench`` arguments come from their declarations
(``tritonfleet.pipelines``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from tritonfleet import artifacts, pipelines
from tritonfleet.repository import Repository

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

    v = sub.add_parser("validate", help="check every config against Triton's schema and ensemble wiring")
    v.set_defaults(handler=cmd_validate)

    s = sub.add_parser("serve", help="run tritonserver on the repository (CPU target)")
    s.add_argument("--target", choices=["cpu", "gpu"], default="cpu")
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument(
        "--openai-port", type=int, default=9000, help="OpenAI-compatible API (/v1) on this port; 0: none"
    )
    s.add_argument(
        "--openai-max-tokens", type=int, help="/v1 budget of a request giving none (default: context left)"
    )
    s.add_argument(
        "--models",
        type=pipelines.names,
        help="comma-separated pipelines or models to load (plus their steps)",
    )
    s.add_argument("--verbose", action="store_true", help="stream the server log to the console")
    s.set_defaults(handler=cmd_serve)

    st = sub.add_parser("status", help="what a running server serves: models, load, memory (like ollama ps)")
    st.add_argument("--url", default="localhost:8000", help="the server's HTTP address")
    st.set_defaults(handler=cmd_status)

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument("--url", help="server address (default localhost:8000 for http, :8001 for grpc)")
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
    from tritonfleet.bench import BENCHES

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
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from tritonfleet.validate import validate_repository

    problems = validate_repository(args.repository)
    for problem in problems:
        console.print(f"[red]✗[/] {problem}")
    count = len(Repository(args.repository).names())
    if problems:
        console.print(f"{len(problems)} problem(s) in {args.repository}")
        return 1
    console.print(f"[green]✓[/] {count} models valid in {args.repository} (gpu and cpu configs)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tritonfleet.server import ServerError, TritonServer

    if args.target == "gpu":
        console.print("[red]✗[/] the GPU target runs in the NGC image: see `docker/Dockerfile`")
        return 2
    repo = Repository(args.repository)
    models = repo.closure(pipelines.expand(args.models or list(pipelines.registry())))
    missing = artifacts.missing(args.repository, models, args.target)
    if missing:
        console.print("[red]✗[/] missing artifacts:\n  " + "\n  ".join(missing))
        return 1
    log = None if args.verbose else artifacts.cache_root() / "logs" / "tritonserver.log"
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    server = TritonServer(
        args.repository,
        models=args.models,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log=log,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    openai = None
    with console.status(f"starting tritonserver with {len(models)} models"):
        try:
            server.start()
            if args.openai_port:
                from tritonfleet.openai import OpenAIServer

                openai = OpenAIServer(
                    server.grpc_url,
                    args.repository,
                    port=args.openai_port,
                    default_max_tokens=args.openai_max_tokens,
                ).start()
        except (ServerError, RuntimeError) as exc:
            console.print(f"[red]✗[/] {exc}")
            server.stop()
            return 1
    try:
        console.print(f"[green]✓[/] serving {len(models)} models: {', '.join(models)}")
        console.print(f"  HTTP    http://{server.http_url}   (KServe v2: /v2/models/<name>/infer)")
        console.print(f"  gRPC    {server.grpc_url}")
        console.print(f"  metrics {server.metrics_url}")
        if openai:
            console.print(f'  OpenAI  {openai.url}   (OpenAI(base_url="{openai.url}", api_key="none"))')
        if log:
            console.print(f"  log     {log}")
        console.print("Ctrl-C stops the server and every model process.")
        assert server.process is not None
        code = server.process.wait()
        console.print(f"[red]tritonserver exited with code {code}[/]")
        return 1
    except KeyboardInterrupt:
        console.print("stopping ...")
        return 0
    finally:
        if openai:
            openai.stop()
        server.stop()


def cmd_status(args: argparse.Namespace) -> int:
    from rich.table import Table

    from tritonfleet import status
    from tritonfleet.clients.fleet import _auth

    try:
        fleet = status.collect(args.url, headers=_auth(None))
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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
