"""``fleet``: build, validate, serve, call and benchmark the model fleet.

fleet build [FAMILY ...] [--target cpu|gpu]
fleet validate
fleet serve [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002] [--models NAME,...]
fleet infer PIPELINE INPUT... [--url URL] [--protocol http|grpc]
fleet bench PIPELINE [--concurrency 1,4,16]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from rich.console import Console

from tritonfleet import artifacts
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

    b = sub.add_parser("build", help="build serving artifacts (cached by content hash)")
    b.add_argument("families", nargs="*", metavar="FAMILY", help=f"one of {sorted(artifacts.RECIPES)}")
    b.add_argument("--target", choices=["cpu", "gpu"], default="cpu")
    b.set_defaults(handler=cmd_build)

    v = sub.add_parser("validate", help="check every config against Triton's schema and ensemble wiring")
    v.set_defaults(handler=cmd_validate)

    s = sub.add_parser("serve", help="run tritonserver on the repository (CPU target)")
    s.add_argument("--target", choices=["cpu", "gpu"], default="cpu")
    s.add_argument("--http-port", type=int, default=8000)
    s.add_argument("--grpc-port", type=int, default=8001)
    s.add_argument("--metrics-port", type=int, default=8002)
    s.add_argument("--models", type=_names, help="comma-separated models to load (plus their steps)")
    s.add_argument("--verbose", action="store_true", help="stream the server log to the console")
    s.set_defaults(handler=cmd_serve)

    i = sub.add_parser("infer", help="call a pipeline and print the result")
    i.add_argument("pipeline", choices=["image_classifier", "llm"])
    i.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, or the prompt for llm")
    i.add_argument("--url", help="server address (default localhost:8000 for http, :8001 for grpc)")
    i.add_argument("--protocol", choices=["http", "grpc"], default="http")
    i.add_argument("--top-k", type=int, default=5, help="image_classifier: classes to show")
    i.add_argument("--max-tokens", type=int, default=128, help="llm: tokens to generate at most")
    i.add_argument("--no-stream", action="store_true", help="llm: one response instead of streaming")
    i.set_defaults(handler=cmd_infer)

    r = sub.add_parser("bench", help="the served pipeline (perf_analyzer/genai-perf) vs its in-process floor")
    r.add_argument("pipeline", choices=["image_classifier", "llm"])
    r.add_argument("--concurrency", type=_ints, help="default 1,4,16 (image_classifier), 1,4,8 (llm)")
    r.add_argument("--url", help="benchmark a running server's gRPC endpoint instead of starting one")
    r.add_argument("--output", type=Path, default=Path("reports"))
    r.add_argument("--measurement-ms", type=int, default=5000, help="image_classifier: perf_analyzer window")
    r.add_argument("--requests", type=int, default=16, help="llm: requests per level")
    r.set_defaults(handler=cmd_bench)
    return p


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _ints(text: str) -> list[int]:
    return [int(n) for n in _names(text)]


def cmd_build(args: argparse.Namespace) -> int:
    try:
        recipes = artifacts.recipes_for(args.families, args.target)
    except KeyError as exc:
        console.print(f"[red]✗[/] {exc.args[0]}")
        return 2
    for recipe in recipes:
        label = f"{recipe.model}/{recipe.version}: {', '.join(recipe.outputs)} ({recipe.target})"
        start = time.monotonic()
        with console.status(f"[bold]building[/] {label} with {recipe.script}"):
            try:
                state = artifacts.build(recipe, log=lambda line: console.print(f"  [dim]$ {line}[/]"))
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
    models = repo.closure(args.models) if args.models else repo.names()
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
    with console.status(f"starting tritonserver with {len(models)} models"):
        try:
            server.start()
        except ServerError as exc:
            console.print(f"[red]✗[/] {exc}")
            return 1
    try:
        console.print(f"[green]✓[/] serving {len(models)} models: {', '.join(models)}")
        console.print(f"  HTTP    http://{server.http_url}   (KServe v2: /v2/models/<name>/infer)")
        console.print(f"  gRPC    {server.grpc_url}")
        console.print(f"  metrics {server.metrics_url}")
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
        server.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_infer(args: argparse.Namespace) -> int:
    from tritonfleet.clients import FleetClient

    with FleetClient(args.url, protocol=args.protocol) as fleet:
        if args.pipeline == "llm":
            prompt = " ".join(args.inputs)
            if args.no_stream:
                print(fleet.generate(prompt, args.max_tokens))
            else:
                for piece in fleet.stream(prompt, args.max_tokens):
                    print(piece, end="", flush=True)
                print()
            return 0
        results = fleet.classify_images([Path(p) for p in args.inputs], top_k=args.top_k)
    for path, classes in zip(args.inputs, results, strict=True):
        console.print(f"[bold]{path}[/]")
        for c in classes:
            console.print(f"  {c.score:7.2%}  {c.label}  [dim]({c.index})[/]")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.pipeline == "llm":
        from tritonfleet.bench.llm import run_llm_bench

        report = run_llm_bench(
            args.repository,
            concurrency=args.concurrency or [1, 4, 8],
            url=args.url,
            output=args.output,
            console=console,
            requests_per_level=args.requests,
        )
    else:
        from tritonfleet.bench.vision import run_image_classifier_bench

        report = run_image_classifier_bench(
            args.repository,
            concurrency=args.concurrency or [1, 4, 16],
            url=args.url,
            output=args.output,
            measurement_ms=args.measurement_ms,
            console=console,
        )
    console.print(f"[green]✓[/] report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
