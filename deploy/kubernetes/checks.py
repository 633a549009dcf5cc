"""Offline checks of the rendered manifests: schemas of a pinned Kubernetes, CRDs, policy.

* :func:`render` runs kustomize (built from the module pinned in
  ``kustomize/go.mod``) on an overlay, as ``kubectl apply -k`` would;
* :func:`schema_errors` validates every object against the OpenAPI schemas of
  Kubernetes :data:`KUBERNETES_VERSION` shipped in the ``kubernetes-validate``
  wheel (strict: an unknown field is an error, as ``kubectl
  --validate=strict`` makes it), and the Prometheus Operator's own objects
  against the CRDs of :data:`PROMETHEUS_OPERATOR_VERSION` vendored in
  ``schemas/`` (made strict the same way);
* :func:`policy_violations` holds every workload to the house rules: probes,
  requests and limits, a locked-down securityContext (the Pod Security
  Standards' `restricted` profile the namespace enforces, and a read-only root
  filesystem), no host namespaces or paths, named ports, Services that select a
  workload and target its named ports, secrets never written as values.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

KUSTOMIZE_DIR = Path(__file__).resolve().parent
OVERLAYS = ("dev", "prod")
KUBERNETES_VERSION = "1.35.0"
PROMETHEUS_OPERATOR_VERSION = "v0.93.0"
CRD_DIR = KUSTOMIZE_DIR / "schemas" / f"prometheus-operator-{PROMETHEUS_OPERATOR_VERSION}"

Obj = dict[str, Any]

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
# Variables whose value is a secret: only ever from a Secret.
SECRET_NAMES = re.compile(r"(SECRET|TOKEN|PASSWORD|DATABASE_URL)", re.IGNORECASE)


def render(overlay: str, kustomize: Path) -> list[Obj]:
    """The objects ``kubectl apply -k overlays/<overlay>`` would send."""
    out = subprocess.run(
        [str(kustomize), "build", str(KUSTOMIZE_DIR / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if out.returncode != 0:
        raise RuntimeError(f"kustomize build {overlay} failed: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def ident(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# ------------------------------------------------------------------- schemas
def _schema_dir() -> Path:
    major_minor = ".".join(KUBERNETES_VERSION.split(".")[:2])
    root = Path(str(files("kubernetes_validate") / "kubernetes-json-schema"))
    return root / f"v{major_minor}.0-local-strict"


@cache
def _definitions() -> Resource[Any]:
    text = (_schema_dir() / "_definitions.json").read_text(encoding="utf-8")
    return Resource.from_contents(json.loads(text))


@cache
def _kubernetes_validator(kind: str, api_version: str) -> jsonschema.Validator | None:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir() / f"{kind.lower()}-{group_version}.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = _definitions() @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema that refuses unknown fields (structural schemas allow them)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def _crd_validators() -> dict[tuple[str, str], jsonschema.Validator]:
    validators: dict[tuple[str, str], jsonschema.Validator] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            # metadata is the API server's ObjectMeta, not described by the CRD.
            schema["properties"]["metadata"] = {"type": "object"}
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def schema_errors(objects: list[Obj]) -> list[str]:
    """One line per schema violation; an object of a kind with no schema is one too."""
    errors: list[str] = []
    for obj in objects:
        api_version, kind = obj["apiVersion"], obj["kind"]
        validator = _crd_validators().get((api_version, kind)) or _kubernetes_validator(
            kind, api_version
        )
        if validator is None:
            errors.append(f"{ident(obj)}: no schema for {api_version} {kind}")
            continue
        for error in validator.iter_errors(obj):
            path = ".".join(str(p) for p in error.absolute_path)
            errors.append(f"{ident(obj)}: {path}: {error.message}")
    return errors


# -------------------------------------------------------------------- policy
def pod_spec(obj: Obj) -> Obj | None:
    if obj["kind"] not in WORKLOAD_KINDS:
        return None
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def _containers(spec: Obj) -> Iterator[tuple[str, Obj]]:
    for c in spec.get("initContainers", []):
        yield "init container", c
    for c in spec.get("containers", []):
        yield "container", c


def _container_violations(where: str, role: str, c: Obj) -> Iterator[str]:
    if role == "container":
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in c:
                yield f"{where}: no {probe}"
    resources = c.get("resources", {})
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(bound, {}):
                yield f"{where}: no {bound}.{resource}"
    sc = c.get("securityContext", {})
    if sc.get("runAsNonRoot") is not True:
        yield f"{where}: securityContext.runAsNonRoot is not true"
    if sc.get("readOnlyRootFilesystem") is not True:
        yield f"{where}: securityContext.readOnlyRootFilesystem is not true"
    if sc.get("allowPrivilegeEscalation") is not False:
        yield f"{where}: securityContext.allowPrivilegeEscalation is not false"
    if sc.get("capabilities", {}).get("drop") != ["ALL"]:
        yield f"{where}: securityContext.capabilities.drop is not [ALL]"
    for port in c.get("ports", []):
        if not port.get("name"):
            yield f"{where}: port {port.get('containerPort')} has no name"
    for env in c.get("env", []):
        if SECRET_NAMES.search(env["name"]) and "value" in env:
            yield f"{where}: {env['name']} has a value; reference a Secret"


def policy_violations(objects: list[Obj]) -> list[str]:
    """Every way the objects break the house rules, one line each."""
    out: list[str] = []
    workloads = []
    for obj in objects:
        if obj["kind"] == "Secret":
            out.append(f"{ident(obj)}: a Secret in the manifests; the operator creates it")
        spec = pod_spec(obj)
        if spec is None:
            continue
        workloads.append(obj)
        pod_sc = spec.get("securityContext", {})
        if pod_sc.get("runAsNonRoot") is not True:
            out.append(f"{ident(obj)}: pod securityContext.runAsNonRoot is not true")
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            out.append(f"{ident(obj)}: pod seccompProfile is not RuntimeDefault")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            out.append(f"{ident(obj)}: shares a host namespace")
        for volume in spec.get("volumes", []):
            if "hostPath" in volume:
                out.append(f"{ident(obj)}: hostPath volume {volume['name']}")
        for role, c in _containers(spec):
            out.extend(_container_violations(f"{ident(obj)} {role} {c['name']}", role, c))
    for svc in (o for o in objects if o["kind"] == "Service"):
        sel = svc["spec"].get("selector") or {}
        selected = [
            w
            for w in workloads
            if sel and sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        if not selected:
            out.append(f"{ident(svc)}: selects no Deployment, StatefulSet or DaemonSet")
        for port in svc["spec"].get("ports", []):
            if not port.get("name"):
                out.append(f"{ident(svc)}: port {port.get('port')} has no name")
            target = port.get("targetPort")
            named = {
                p.get("name")
                for w in selected
                for c in w["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            }
            if isinstance(target, str) and selected and target not in named:
                out.append(f"{ident(svc)}: targetPort {target} is no container port of its pods")
    return out


def main(argv: list[str] | None = None) -> int:
    """``kustomize build overlays/prod | python -m deploy.kubernetes.checks -``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m deploy.kubernetes.checks",
        description="Check rendered manifests: Kubernetes and CRD schemas, then the policy.",
    )
    parser.add_argument("file", help="rendered manifests (YAML, several documents); - for stdin")
    args = parser.parse_args(argv)
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    objects = [d for d in yaml.safe_load_all(text) if d]
    problems = [f"schema: {e}" for e in schema_errors(objects)]
    problems += [f"policy: {v}" for v in policy_violations(objects)]
    for line in problems:
        print(line)
    print(
        f"{len(objects)} objects, {len(problems)} problems "
        f"(Kubernetes {KUBERNETES_VERSION}, Prometheus Operator {PROMETHEUS_OPERATOR_VERSION})",
        file=sys.stderr,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
