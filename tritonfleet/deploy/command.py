"""``fleet deploy k8s --plan reports/plan/NAME.json [--output DIR] [--image IMAGE]`` (manifests from a plan)
and ``fleet deploy calibration MODEL|--all --output PATH`` (real sample inputs for int8 and plan checks)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from tritonfleet.deploy import calibration, image, kubernetes
from tritonfleet.plan import memory, pack, report, spec
from tritonfleet.repository import Repository

DEFAULT_PLAN = "1xl4"  # docker/k8s/ holds its manifests; others go to docker/k8s/<NAME>/
K8S_DIR = Path("docker/k8s")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="deploy_command", required=True)
    k = sub.add_parser("k8s", help="Kubernetes manifests (Deployment, KServe, HPA, monitors) from a plan")
    k.add_argument("--plan", type=Path, required=True, help="fleet plan's report: reports/plan/NAME.json")
    k.add_argument("--output", type=Path, help="default docker/k8s (the default plan) or docker/k8s/NAME")
    k.add_argument("--image", default=kubernetes.Options.image, help="the built image, with its registry")
    k.add_argument("--max-replicas", type=int, default=kubernetes.Options.max_replicas)
    k.add_argument(
        "--llm-path", choices=("engine", "llmapi"), default=kubernetes.Options.llm_path,
        help="the LLM's path in the pods (LLM_PATH): the engine, or the LLM-API variant",
    )  # fmt: skip
    c = sub.add_parser("calibration", help="real sample inputs of TensorRT models (.npz)")
    c.add_argument("model", nargs="?", help="a TensorRT model (default with --all: every one)")
    c.add_argument("--all", action="store_true", help="every model with declared sample inputs")
    c.add_argument("--count", type=int, default=calibration.DEFAULT_COUNT)
    c.add_argument("--output", type=Path, required=True, help="a .npz file, or a folder with --all")


def python_instances(repository: Repository) -> int:
    """Python-backend instances of the GPU configs (each a stub with its own /dev/shm region)."""
    return sum(
        sum(g.count or 1 for g in config.instance_group) or 1
        for _, config in repository.configs("gpu")
        if config.backend == "python"
    )


def planned(repository: Repository, gpus: str, name: str | None = None, tp: dict[str, int] | None = None
            ) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """A plan's report and Kubernetes fragment, made in-process (what fleet plan would write)."""
    inventory = spec.parse(gpus)
    plan = pack.pack(memory.fleet(repository, tp), inventory, name or spec.default_name(inventory))
    return report.to_json(plan), report.kubernetes(plan)


def manifests(plan: dict[str, Any], k8s: dict[str, Any], repository: Repository, **options: Any
              ) -> dict[str, str]:  # fmt: skip
    """File name -> YAML for a plan, with this repository's /dev/shm needs and docker/image.env's base."""
    opts = kubernetes.Options(python_instances=python_instances(repository), **options)
    pin = image.load()
    return kubernetes.render(kubernetes.generate(plan, k8s, pin, opts), plan, pin)


def output_dir(plan_name: str) -> Path:
    return K8S_DIR if plan_name == DEFAULT_PLAN else K8S_DIR / plan_name


def run(args: argparse.Namespace, console: Console) -> int:
    repository = Repository(args.repository)
    if args.deploy_command == "calibration":
        models = sorted(calibration.producers()) if args.all else [args.model]
        if not args.all and not args.model:
            console.print("[red]✗[/] name a MODEL or give --all")
            return 2
        for model in models:
            path = args.output / f"{model}.npz" if args.all else args.output
            try:
                calibration.write(model, repository.root, path, args.count)
            except KeyError as exc:
                console.print(f"[red]✗[/] {exc.args[0]}")
                return 2
            console.print(f"[green]✓[/] {model}: {args.count} real inputs in {path}")
        return 0
    k8s_path = args.plan.with_name(args.plan.name.removesuffix(".json") + ".k8s.json")
    try:
        plan, k8s = json.loads(args.plan.read_text()), json.loads(k8s_path.read_text())
        files = manifests(
            plan, k8s, repository, image=args.image, max_replicas=args.max_replicas, llm_path=args.llm_path
        )
    except (OSError, ValueError, KeyError) as exc:
        console.print(f"[red]✗[/] {exc}")
        return 2
    out = args.output or output_dir(plan["name"])
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    console.print(f"[green]✓[/] {len(files)} manifests for plan {plan['name']} in {out}")
    console.print(f"  kubectl create secret generic {kubernetes.KEYS_SECRET} --from-file=keys.json=KEYS")
    console.print(f"  kubectl apply -k {out}    # or {out}/kserve/ for KServe")
    return 0
