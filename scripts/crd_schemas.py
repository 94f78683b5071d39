#!/usr/bin/env python3
"""Derive strict JSON schemas for the custom resources the generated manifests use, offline, from packages
on PyPI, into tests/deploy/schemas/ (committed; tests validate the manifests against them).

- KServe InferenceService (serving.kserve.io/v1beta1) and ServingRuntime (v1alpha1): the ``openapi_types``
  and ``attribute_map`` of the KServe SDK's generated models (``kserve==0.21.0``, read with ``ast``, not
  imported), which are KServe's CRD OpenAPI schema as a Python client.
- Prometheus Operator ServiceMonitor and PodMonitor (monitoring.coreos.com/v1): the pydantic models that
  ``cloudcoil-models-prometheus-operator==0.80.1.0`` generates from the operator's published CRDs
  (``model_json_schema``).

Kubernetes' own types (ObjectMeta, Container, Volume, ...) are referenced in kubernetes-validate's strict
definitions (``/api/_definitions.json``), which the tests put beside these schemas. Every object with
declared properties gets ``additionalProperties: false``, as ``kubernetes-validate --strict`` does for core
kinds (the API server's strict field validation rejects unknown fields of a structural CRD too).

    python3 -m venv /tmp/crd && /tmp/crd/bin/pip install cloudcoil==0.6.0 \\
        cloudcoil-models-prometheus-operator==0.80.1.0
    pip download --no-deps kserve==0.21.0 -d /tmp/kserve
    /tmp/crd/bin/python scripts/crd_schemas.py --kserve-wheel /tmp/kserve/kserve-0.21.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import zipfile
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "tests" / "deploy" / "schemas"
K8S = "/api/_definitions.json#/$defs/"
# Kubernetes client class -> kubernetes-validate definition (the names the KServe SDK uses).
K8S_TYPES = {
    "V1ObjectMeta": "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "V1ListMeta": "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
    "V1Time": "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "ResourceQuantity": "io.k8s.apimachinery.pkg.api.resource.Quantity",
}
K8S_CORE = "io.k8s.api.core.v1."
SCALARS = {"str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
           "float": {"type": "number"}, "datetime": {"type": "string"}, "object": {}}  # fmt: skip


def kserve_models(wheel: Path) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """Class name -> (openapi_types, attribute_map) of every model in the wheel's kserve/models/."""
    models = {}
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if not re.fullmatch(r"kserve/models/v\w+\.py", name):
                continue
            for node in ast.walk(ast.parse(z.read(name))):
                if isinstance(node, ast.ClassDef):
                    found = {}
                    for item in node.body:
                        target = item.targets[0] if isinstance(item, ast.Assign) else None
                        if isinstance(target, ast.Name) and target.id in ("openapi_types", "attribute_map"):
                            found[target.id] = ast.literal_eval(item.value)
                    if len(found) == 2:
                        models[node.name] = (found["openapi_types"], found["attribute_map"])
    return models


def kserve_schema(wheel: Path, root: str, api_version: str, kind: str) -> dict[str, Any]:
    models = kserve_models(wheel)
    defs: dict[str, Any] = {}

    def type_schema(t: str) -> dict[str, Any]:
        if t in SCALARS:
            return dict(SCALARS[t])
        if m := re.fullmatch(r"list\[(.+)\]", t):
            return {"type": "array", "items": type_schema(m.group(1))}
        if m := re.fullmatch(r"dict\(str, (.+)\)", t):
            return {"type": "object", "additionalProperties": type_schema(m.group(1))}
        if t in K8S_TYPES:
            return {"$ref": K8S + K8S_TYPES[t]}
        if t in models:
            add(t)
            return {"$ref": f"#/$defs/{t}"}
        if m := re.fullmatch(r"V1([A-Z]\w+)", t):
            return {"$ref": K8S + K8S_CORE + m.group(1)}
        if m := re.fullmatch(r"K8sIoApi(\w+?)V(\d)(\w+)", t):  # K8sIoApiAppsV1DeploymentStrategy
            group = re.sub(r"(?<!^)(?=[A-Z])", ".", m.group(1)).lower()
            return {"$ref": f"{K8S}io.k8s.api.{group}.v{m.group(2)}.{m.group(3)}"}
        return {"description": f"{t}: not checked (a Knative or KEDA type)"}

    def add(name: str) -> None:
        if name in defs:
            return
        defs[name] = {}
        types, names = models[name]
        defs[name] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {names[attr]: type_schema(t) for attr, t in types.items()},
        }

    add(root)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://kubernetes.io/api/crd/{kind.lower()}.json",
        "$defs": defs,
        "$ref": f"#/$defs/{root}",
        "description": f"{api_version} {kind}, derived from {wheel.name} (scripts/crd_schemas.py)",
    }
    defs[root]["properties"]["apiVersion"] = {"enum": [api_version]}
    defs[root]["properties"]["kind"] = {"enum": [kind]}
    defs[root]["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return schema


def strict(node: Any) -> Any:
    """``additionalProperties: false`` on every object schema with declared properties."""
    if isinstance(node, dict):
        out = {k: strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def prometheus_schema(kind: str) -> dict[str, Any]:
    from cloudcoil.models.prometheus_operator import v1  # the pydantic models of the operator's CRDs

    model = getattr(v1, kind)
    schema = strict(model.model_json_schema(by_alias=True))
    schema["properties"]["metadata"] = {"$ref": K8S + K8S_TYPES["V1ObjectMeta"]}
    schema["properties"]["apiVersion"] = {"enum": ["monitoring.coreos.com/v1"]}
    schema["properties"]["kind"] = {"enum": [kind]}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://kubernetes.io/api/crd/{kind.lower()}.json"
    schema["description"] = (
        f"monitoring.coreos.com/v1 {kind}, from cloudcoil-models-prometheus-operator 0.80.1.0 "
        "(prometheus-operator v0.80.1's CRDs), scripts/crd_schemas.py"
    )
    return schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kserve-wheel", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    schemas = {
        "inferenceservice-serving.kserve.io-v1beta1.json": kserve_schema(
            args.kserve_wheel, "V1beta1InferenceService", "serving.kserve.io/v1beta1", "InferenceService"
        ),
        "servingruntime-serving.kserve.io-v1alpha1.json": kserve_schema(
            args.kserve_wheel, "V1alpha1ServingRuntime", "serving.kserve.io/v1alpha1", "ServingRuntime"
        ),
        "servicemonitor-monitoring.coreos.com-v1.json": prometheus_schema("ServiceMonitor"),
        "podmonitor-monitoring.coreos.com-v1.json": prometheus_schema("PodMonitor"),
    }
    for name, schema in schemas.items():
        (args.output / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.output / name}")


if __name__ == "__main__":
    main()
