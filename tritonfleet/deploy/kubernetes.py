"""Kubernetes manifests generated from a plan (``fleet plan``'s ``<NAME>.json`` and ``<NAME>.k8s.json``).

One pod serves the whole fleet on the plan's GPUs: the front door is its entry point (probes, Service and
scraping all go to it; tritonserver listens on 127.0.0.1 inside), ``--model-config-name=<NAME>`` and the
plan's other tritonserver flags are its arguments, its GPU request and node affinity are the plan's, and
a tensor-parallel LLM gets the orchestrator mode and ``--tp`` for the engine build. Beside the Deployment:
the engine/plan cache claim, the Service, a ServiceMonitor and a PodMonitor (Prometheus Operator, one of
the two), the HPA on queue time and the Prometheus Adapter rule it needs, the Grafana dashboard as a
ConfigMap that Grafana's dashboard sidecar provisions (kube-prometheus-stack's), and a KServe ServingRuntime +
InferenceService as the alternative to the Deployment. ``generate`` returns file name -> documents.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml

from tritonfleet.deploy import adapter
from tritonfleet.deploy.image import Image
from tritonfleet.monitoring import dashboard

NAME = "tritonfleet"
LABELS = {"app.kubernetes.io/name": NAME}
PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
KEYS_SECRET = "tritonfleet-keys"
CACHE_CLAIM = "tritonfleet-cache"
GIB = 1 << 30
MIB = 1 << 20
SHM_PER_PYTHON_INSTANCE = 64 * MIB  # a stub's region: 16 MiB default, grown by 16 MiB for large tensors
STARTUP_SECONDS = 30 * 60  # the first start on a GPU builds every plan and the LLM engine
GPU_ROLES = ("llm", "tensorrt", "gpu")
# The label Grafana's dashboard sidecar watches ConfigMaps for (kube-prometheus-stack's
# grafana.sidecar.dashboards.label and labelValue defaults).
GRAFANA_DASHBOARD_LABEL = ("grafana_dashboard", "1")


@dataclass(frozen=True)
class Options:
    image: str = "tritonfleet-gpu:0.1.0"  # the image docker/Dockerfile builds (make image), with registry
    min_replicas: int = 1
    max_replicas: int = 8
    queue_us_target: int = 5000  # mean queue wait per request the HPA keeps under (5 ms)
    cache_size: str = "20Gi"
    python_instances: int = 8  # Python-backend instances of the repository: they size /dev/shm
    llm_path: str = "engine"  # LLM_PATH for the entrypoint: engine, or llmapi (the LLM-API variant)


def shm_limit(python_instances: int) -> str:
    """The memory-backed /dev/shm: every Python stub's region, at least 1 GiB (Docker's 64 MiB default
    starves the Python backend)."""
    return f"{max(1, math.ceil(python_instances * SHM_PER_PYTHON_INSTANCE / GIB))}Gi"


def _gib(text: str) -> int:
    return int(text.removesuffix("Gi"))


def llm_tp(plan: dict[str, Any]) -> int:
    return max((m["tp"] for m in plan["models"].values() if m["role"] == "llm"), default=1)


def gpu_models(plan: dict[str, Any]) -> list[str]:
    """Models the plan puts on GPUs: the ones whose requests queue for a GPU."""
    return sorted(name for name, m in plan["models"].items() if m["role"] in GPU_ROLES)


def _labels(plan: dict[str, Any], image: Image) -> dict[str, str]:
    return {**LABELS, "tritonfleet.io/plan": plan["name"], "tritonfleet.io/triton": image.release}


def _meta(name: str, plan: dict[str, Any], image: Image, **extra: Any) -> dict[str, Any]:
    return {"name": name, "labels": _labels(plan, image), **extra}


def container(plan: dict[str, Any], k8s: dict[str, Any], image: Image, options: Options) -> dict[str, Any]:
    shm = shm_limit(options.python_instances)
    env = [
        {"name": "PLAN_CACHE", "value": "/plans"},
        {"name": "ENGINE_CACHE", "value": "/engines/cache"},
        {"name": "TRITONFLEET_KEYS", "value": "/etc/tritonfleet/keys.json"},
        *k8s["env"],
    ]
    if options.llm_path != "engine":  # the image's default (docker/image.env) otherwise
        env.append({"name": "LLM_PATH", "value": options.llm_path})
    elif (tp := llm_tp(plan)) > 1:  # the engine build's; the LLM-API model.yaml takes tp from the plan
        env.append({"name": "LLM_BUILD_ARGS", "value": f"--tp {tp}"})

    def ready() -> dict[str, Any]:
        return {"path": "/v2/health/ready", "port": "http"}

    return {
        "name": "tritonfleet",
        "image": options.image,
        "args": list(k8s["args"]),  # passed on to tritonserver by the entrypoint (fleet serve -- ...)
        "env": env,
        "ports": [{"name": n, "containerPort": p} for n, p in PORTS.items()],
        "resources": {
            "requests": {"cpu": "4", "memory": f"{8 + _gib(shm)}Gi", **k8s["resources"]["requests"]},
            "limits": {"memory": f"{16 + _gib(shm)}Gi", **k8s["resources"]["limits"]},
        },
        "startupProbe": {"httpGet": ready(), "periodSeconds": 10, "failureThreshold": STARTUP_SECONDS // 10},
        "readinessProbe": {"httpGet": ready(), "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "volumeMounts": [
            {"name": "keys", "mountPath": "/etc/tritonfleet", "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "cache", "mountPath": "/plans", "subPath": "plans"},
            {"name": "cache", "mountPath": "/engines", "subPath": "engines"},
        ],
    }


def volumes(options: Options) -> list[dict[str, Any]]:
    return [
        {"name": "keys", "secret": {"secretName": KEYS_SECRET}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_limit(options.python_instances)}},
        {"name": "cache", "persistentVolumeClaim": {"claimName": CACHE_CLAIM}},
    ]


def pod_placement(k8s: dict[str, Any]) -> dict[str, Any]:
    return {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [k8s["nodeAffinity"]]}
            }
        },
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }


def generate(
    plan: dict[str, Any], k8s: dict[str, Any], image: Image, options: Options | None = None
) -> dict[str, list[dict[str, Any]]]:
    """File name -> the documents it holds, for ``plan``."""
    options = options or Options()
    k8s = json.loads(json.dumps(k8s, sort_keys=True))  # as fleet plan writes it: the same text either way
    if k8s.get("format") != 1 or k8s["plan"] != plan["name"]:
        raise ValueError(f"{k8s.get('plan')}.k8s.json is not format 1 of plan {plan['name']}")
    labels = _labels(plan, image)
    pod_spec = {
        "terminationGracePeriodSeconds": 60,  # tritonserver --exit-timeout-secs=30 drains in-flight requests
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
        **pod_placement(k8s),
        "containers": [container(plan, k8s, image, options)],
        "volumes": volumes(options),
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME, plan, image, annotations={"tritonfleet.io/base-image": image.reference}),
        "spec": {
            "selector": {"matchLabels": dict(LABELS)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(CACHE_CLAIM, plan, image),
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": options.cache_size}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(NAME, plan, image),
        "spec": {
            "type": "ClusterIP",
            "selector": dict(LABELS),
            "ports": [
                {"name": n, "port": p, "targetPort": n, **({"appProtocol": "grpc"} if n == "grpc" else {})}
                for n, p in PORTS.items()
            ],
        },
    }
    endpoint = {"port": "metrics", "path": "/metrics", "interval": "15s"}
    service_monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _meta(NAME, plan, image),
        "spec": {"selector": {"matchLabels": dict(LABELS)}, "endpoints": [endpoint]},
    }
    pod_monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _meta(NAME, plan, image),
        "spec": {"selector": {"matchLabels": dict(LABELS)}, "podMetricsEndpoints": [endpoint]},
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(NAME, plan, image),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": options.min_replicas,
            "maxReplicas": options.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": adapter.METRIC},
                        "target": {"type": "AverageValue", "averageValue": str(options.queue_us_target)},
                    },
                },
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                },
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
                },
            },
        },
    }
    adapter_config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("tritonfleet-adapter-rules", plan, image),
        "data": {"config.yaml": dump({"rules": [adapter.rule(gpu_models(plan))]})},
    }
    runtime_container = container(plan, k8s, image, options)
    runtime_container["name"] = "kserve-container"
    runtime_container["ports"] = [{"containerPort": PORTS["http"], "protocol": "TCP"}]  # one port per runtime
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": _meta(NAME, plan, image),
        "spec": {
            "supportedModelFormats": [{"name": "triton", "version": "2", "autoSelect": True}],
            "protocolVersions": ["v2", "grpc-v2"],
            "containers": [runtime_container],
            "volumes": volumes(options),
            **pod_placement(k8s),
        },
    }
    inference_service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": _meta(
            NAME, plan, image, annotations={"serving.kserve.io/deploymentMode": "RawDeployment"}
        ),
        "spec": {
            "predictor": {
                "minReplicas": options.min_replicas,
                "maxReplicas": options.max_replicas,
                "model": {
                    "modelFormat": {"name": "triton"},
                    "runtime": NAME,
                    "protocolVersion": "v2",
                    "resources": k8s["resources"],
                },
            }
        },
    }
    label, value = GRAFANA_DASHBOARD_LABEL
    meta = _meta(f"{NAME}-dashboard", plan, image)
    dashboards = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**meta, "labels": {**meta["labels"], label: value}},
        "data": {f"{NAME}.json": dashboard.text()},
    }
    return {
        "cache-pvc.yaml": [claim],
        "deployment.yaml": [deployment],
        "service.yaml": [service],
        "servicemonitor.yaml": [service_monitor],
        "podmonitor.yaml": [pod_monitor],
        "hpa.yaml": [hpa],
        "grafana-dashboard.yaml": [dashboards],
        "prometheus-adapter-rules.yaml": [adapter_config],
        "kserve/servingruntime.yaml": [runtime],
        "kserve/inferenceservice.yaml": [inference_service],
    }


class _Dumper(yaml.SafeDumper):
    """Block scalars for multi-line strings (the adapter's config), no anchors for repeated objects."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump(document: dict[str, Any]) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100)


KUSTOMIZATION = (
    "cache-pvc.yaml",
    "deployment.yaml",
    "service.yaml",
    "servicemonitor.yaml",
    "hpa.yaml",
    "grafana-dashboard.yaml",
)


def header(plan: dict[str, Any], image: Image) -> str:
    return (
        f"# Generated by `fleet deploy k8s --plan reports/plan/{plan['name']}.json` (plan {plan['spec']}, "
        f"base {image.tag}).\n# Regenerate, do not edit: docs/deploy.md.\n"
    )


def render(files: dict[str, list[dict[str, Any]]], plan: dict[str, Any], image: Image) -> dict[str, str]:
    """File name -> YAML text, plus kustomization.yaml (the Deployment path; KServe and the PodMonitor are
    the alternatives, the adapter rules go to the adapter's namespace)."""
    out = {name: header(plan, image) + "---\n".join(dump(d) for d in docs) for name, docs in files.items()}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "labels": [{"pairs": {"app.kubernetes.io/part-of": NAME}}],
        "resources": list(KUSTOMIZATION),
    }
    out["kustomization.yaml"] = header(plan, image) + dump(kustomization)
    return out
