"""Kubernetes manifests generated from plans: committed ones are current, every manifest passes
kubernetes-validate --strict (core kinds) or the CRDs' published schemas (KServe, Prometheus Operator), and
they say what the plan says (GPUs, flags, tensor parallelism) with the front door as the entry point."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from tritonfleet.artifacts import REPOSITORY
from tritonfleet.deploy import adapter, command, kubernetes
from tritonfleet.repository import Repository

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
SCHEMAS = Path(__file__).parent / "schemas"
K8S_VERSION = "1.37.0"
# The committed plans: docker/k8s/ for the default, docker/k8s/<name>/ for the tensor-parallel example.
PLANS = {"1xl4": ("1xL4", None), "3xl4-tp3": ("3xL4", {"tensorrt_llm": 3})}
CRDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"), ("serving.kserve.io/v1alpha1", "ServingRuntime"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PodMonitor"),
}  # fmt: skip


@pytest.fixture(scope="module")
def generated() -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    repo = Repository(REPOSITORY)
    out = {}
    for name, (gpus, tp) in PLANS.items():
        plan, k8s = command.planned(repo, gpus, name, tp)
        out[name] = (plan, command.manifests(plan, k8s, repo))
    return out


def documents(folder: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        str(p.relative_to(folder)): list(yaml.safe_load_all(p.read_text()))
        for p in sorted(folder.rglob("*.yaml"))
        if p.relative_to(folder).parts[0] not in PLANS or folder != K8S
    }


def test_committed_manifests_are_the_generated_ones(generated: dict[str, Any]) -> None:
    for name, (_, files) in generated.items():
        folder = command.output_dir(name)
        committed = {str(p.relative_to(ROOT / folder)) for p in (ROOT / folder).rglob("*.yaml")}
        committed = {c for c in committed if c.split("/")[0] not in PLANS}
        assert committed == set(files), name
        for file, text in files.items():
            assert (ROOT / folder / file).read_text() == text, f"{folder / file}: run fleet deploy k8s"


def crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    group, version = api_version.split("/")
    schema = json.loads((SCHEMAS / f"{kind.lower()}-{group}-{version}.json").read_text())
    defs = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    k8s_defs = json.loads((defs / f"v{K8S_VERSION}-local-strict" / "_definitions.json").read_text())
    registry = Resource.from_contents(k8s_defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def all_manifests() -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(path.relative_to(ROOT)), doc)
        for path in sorted(K8S.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
    ]


@pytest.mark.parametrize(("path", "doc"), all_manifests(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_manifest_passes_its_schema_strictly(path: str, doc: dict[str, Any]) -> None:
    if (doc["apiVersion"], doc["kind"]) in CRDS:
        crd_validator(doc["apiVersion"], doc["kind"]).validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schemas_reject_unknown_and_mistyped_fields() -> None:
    """The checks can fail: a typo'd field, a wrong type, a missing spec."""
    (deployment,) = yaml.safe_load_all((K8S / "deployment.yaml").read_text())
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    (isvc,) = yaml.safe_load_all((K8S / "kserve" / "inferenceservice.yaml").read_text())
    isvc["spec"]["predictor"]["model"]["modelFormatt"] = {"name": "triton"}
    with pytest.raises(jsonschema.ValidationError):
        crd_validator("serving.kserve.io/v1beta1", "InferenceService").validate(isvc)
    (monitor,) = yaml.safe_load_all((K8S / "servicemonitor.yaml").read_text())
    monitor["spec"]["endpoints"][0]["interval"] = 15
    with pytest.raises(jsonschema.ValidationError):
        crd_validator("monitoring.coreos.com/v1", "ServiceMonitor").validate(monitor)
    (runtime,) = yaml.safe_load_all((K8S / "kserve" / "servingruntime.yaml").read_text())
    runtime["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(jsonschema.ValidationError):
        crd_validator("serving.kserve.io/v1alpha1", "ServingRuntime").validate(runtime)


def one(path: Path) -> dict[str, Any]:
    (doc,) = yaml.safe_load_all(path.read_text())
    return doc


@pytest.mark.parametrize("name", sorted(PLANS))
def test_manifests_say_what_the_plan_says(name: str, generated: dict[str, Any]) -> None:
    plan, _ = generated[name]
    folder = ROOT / command.output_dir(name)
    k8s = command.planned(Repository(REPOSITORY), PLANS[name][0], name, PLANS[name][1])[1]
    deployment = one(folder / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    gpus = k8s["resources"]["limits"]["nvidia.com/gpu"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == gpus
    assert gpus == len(plan["gpus"])
    assert c["args"] == k8s["args"] and f"--model-config-name={name}" in c["args"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [k8s["nodeAffinity"]]
    env = {e["name"]: e["value"] for e in c["env"]}
    tp = kubernetes.llm_tp(plan)
    assert (env.get("TRTLLM_ORCHESTRATOR"), env.get("LLM_BUILD_ARGS")) == (
        ("1", f"--tp {tp}") if tp > 1 else (None, None)
    )
    # The front door is the entry point: probes and ports are its own; keys come from the Secret.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == kubernetes.PORTS
    assert c["startupProbe"]["httpGet"] == c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready",
                                                                              "port": "http"}  # fmt: skip
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 20 * 60
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert volumes[mounts["/etc/tritonfleet"]["name"]]["secret"]["secretName"] == kubernetes.KEYS_SECRET
    assert env["TRITONFLEET_KEYS"] == "/etc/tritonfleet/keys.json"
    shm = volumes[mounts["/dev/shm"]["name"]]["emptyDir"]
    assert shm["medium"] == "Memory" and re.fullmatch(r"\d+Gi", shm["sizeLimit"])
    limit = int(shm["sizeLimit"][:-2])
    assert (
        limit * (1 << 30)
        >= command.python_instances(Repository(REPOSITORY)) * kubernetes.SHM_PER_PYTHON_INSTANCE
    )
    claim = one(folder / "cache-pvc.yaml")
    cache = volumes[mounts["/plans"]["name"]]
    assert cache["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert (
        mounts["/engines"]["name"] == mounts["/plans"]["name"]
        and "ReadWriteMany" in claim["spec"]["accessModes"]
    )
    # Service, monitors and autoscaler point at it.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(folder / "service.yaml")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == kubernetes.PORTS
    for monitor in ("servicemonitor.yaml", "podmonitor.yaml"):
        doc = one(folder / monitor)
        assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = one(folder / "hpa.yaml")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (pods_metric,) = [m for m in hpa["metrics"] if m["type"] == "Pods"]
    rules = yaml.safe_load(one(folder / "prometheus-adapter-rules.yaml")["data"]["config.yaml"])["rules"]
    assert pods_metric["pods"]["metric"]["name"] == rules[0]["name"]["as"] == adapter.METRIC
    assert all(m in rules[0]["metricsQuery"] for m in kubernetes.gpu_models(plan))
    # KServe: the same container and GPUs behind an InferenceService.
    runtime = one(folder / "kserve" / "servingruntime.yaml")["spec"]
    isvc = one(folder / "kserve" / "inferenceservice.yaml")["spec"]["predictor"]["model"]
    assert isvc["runtime"] == one(folder / "kserve" / "servingruntime.yaml")["metadata"]["name"]
    assert isvc["modelFormat"]["name"] in {f["name"] for f in runtime["supportedModelFormats"]}
    assert runtime["containers"][0]["args"] == c["args"] and isvc["resources"] == k8s["resources"]
    kustomization = one(folder / "kustomization.yaml")
    assert all((folder / r).is_file() for r in kustomization["resources"])


def test_the_image_bakes_the_committed_plans() -> None:
    """The image runs fleet plan for each default PLANS entry, so --model-config-name=NAME resolves."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    default = re.search(r'^ARG PLANS="([^"]*)"', dockerfile, re.MULTILINE).group(1)
    baked = []
    for entry in default.split(";"):
        words = entry.split()
        gpus = words[words.index("--gpus") + 1]
        baked.append(words[words.index("--name") + 1] if "--name" in words else gpus.lower())
    assert sorted(baked) == sorted(PLANS)


def test_the_dashboard_configmap_is_docker_monitoring_s_dashboard() -> None:
    """Grafana's dashboard sidecar (kube-prometheus-stack) loads ConfigMaps with its label: the committed
    dashboard, on the Deployment's path (kustomization)."""
    for name in PLANS:
        folder = ROOT / command.output_dir(name)
        (doc,) = yaml.safe_load_all((folder / "grafana-dashboard.yaml").read_text())
        label, value = kubernetes.GRAFANA_DASHBOARD_LABEL
        assert doc["kind"] == "ConfigMap" and doc["metadata"]["labels"][label] == value
        (text,) = doc["data"].values()
        assert json.loads(text) == json.loads((ROOT / "docker" / "monitoring" / "dashboard.json").read_text())
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert "grafana-dashboard.yaml" in kustomization["resources"]


def test_the_llmapi_path_reaches_the_pods(generated: dict[str, Any]) -> None:
    """fleet deploy k8s --llm-path llmapi: the entrypoint's LLM_PATH, and no engine build arguments."""
    plan, _ = generated["3xl4-tp3"]
    k8s = command.planned(Repository(REPOSITORY), "3xL4", "3xl4-tp3", {"tensorrt_llm": 3})[1]
    files = command.manifests(plan, k8s, Repository(REPOSITORY), llm_path="llmapi")
    (c,) = yaml.safe_load(files["deployment.yaml"])["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["LLM_PATH"] == "llmapi" and "LLM_BUILD_ARGS" not in env
