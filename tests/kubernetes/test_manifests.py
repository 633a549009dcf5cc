"""The Kubernetes manifests, rendered by a real kustomize and checked offline.

No cluster runs here: what is checked is what an API server would check
(Kubernetes' own schemas, the Prometheus Operator's CRDs, strict about unknown
fields), the house policy, and the properties the manifests promise (who may
reach a database, the ops port, the shutdown budget, secrets by reference).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.paths import rule_files
from dashboards.links import PROMETHEUS as PROMETHEUS_DATASOURCE
from deploy.kubernetes import checks, generate
from deploy.kubernetes import manifests as m
from redline.binaries import HOW_TO_GET_GO, binary_path
from services.chassis.config import ServiceSettings
from services.chassis.dependencies import dependency_configs
from services.topology import SERVICES
from tests.stack_config.stack import clean_env, go_binary

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def kustomize() -> Path:
    path = binary_path("kustomize")
    if path is None:
        pytest.fail(
            f"kustomize is not built: `.venv/bin/python -m redline.binaries` ({HOW_TO_GET_GO})"
        )
    return path


@pytest.fixture(scope="module")
def rendered(kustomize: Path) -> dict[str, list[Obj]]:
    return {overlay: checks.render(overlay, kustomize) for overlay in checks.OVERLAYS}


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


def config_of(objects: list[Obj], deployment: Obj) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    (ref,) = container["envFrom"]
    data: dict[str, str] = find(objects, "ConfigMap", ref["configMapRef"]["name"])["data"]
    return data


def test_the_committed_base_is_what_the_sources_generate() -> None:
    stale = generate.stale()
    assert stale == [], f"regenerate with `python -m deploy.kubernetes`: {stale}"


@pytest.mark.parametrize("overlay", checks.OVERLAYS)
def test_each_overlay_matches_the_kubernetes_and_prometheus_operator_schemas(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objects = rendered[overlay]
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "DaemonSet", "StatefulSet", "ServiceMonitor", "PrometheusRule"} <= kinds
    errors = checks.schema_errors(objects)
    assert not errors, "\n".join(["schema errors:", *errors])


def test_the_schema_check_refuses_unknown_fields_and_wrong_types(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["dev"]
    deployment = copy.deepcopy(find(objects, "Deployment", "orders"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pat"] = "/"
    monitor = copy.deepcopy(find(objects, "ServiceMonitor", "orders"))
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    rule = copy.deepcopy(find(objects, "PrometheusRule", "redline-services"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = 5
    errors = checks.schema_errors([deployment, monitor, rule])
    assert len(errors) == 3, errors
    assert "'pat' was unexpected" in errors[0]
    assert "'intervall' was unexpected" in errors[1]
    assert "is not of type 'string'" in errors[2]


@pytest.mark.parametrize("overlay", checks.OVERLAYS)
def test_every_workload_keeps_the_house_policy(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    violations = checks.policy_violations(rendered[overlay])
    assert not violations, "\n".join(["policy violations:", *violations])


def test_the_policy_refuses_a_container_without_probes(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["dev"])
    container = find(objects, "Deployment", "inventory")["spec"]["template"]["spec"]["containers"][
        0
    ]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        del container[probe]
    assert checks.policy_violations(objects) == [
        "Deployment/inventory container inventory: no startupProbe",
        "Deployment/inventory container inventory: no livenessProbe",
        "Deployment/inventory container inventory: no readinessProbe",
    ]


def test_the_policy_refuses_secrets_as_values_and_services_selecting_nothing(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = copy.deepcopy(rendered["dev"])
    container = find(objects, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    container["env"].append({"name": "REDLINE_JWT_SECRET", "value": "hunter2"})
    find(objects, "Service", "payments")["spec"]["selector"] = {"app.kubernetes.io/name": "payment"}
    assert checks.policy_violations(objects) == [
        "Deployment/gateway container gateway: REDLINE_JWT_SECRET has a value; reference a Secret",
        "Service/payments: selects no Deployment, StatefulSet or DaemonSet",
    ]


def ingress_rules(objects: list[Obj], name: str) -> list[Obj]:
    policy = find(objects, "NetworkPolicy", name)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": name}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules: list[Obj] = policy["spec"]["ingress"]
    return rules


def test_each_database_is_reachable_only_from_its_own_service(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["prod"]
    databases = [s for s in SERVICES.values() if s.has_database]
    assert databases
    for info in databases:
        (rule,) = ingress_rules(objects, f"{info.name}-postgres")
        assert rule["from"] == [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": info.name}}}
        ]
        assert rule["ports"] == [{"port": "postgres", "protocol": "TCP"}]


def test_nats_is_reachable_only_from_the_services_that_publish_or_consume(
    rendered: dict[str, list[Obj]],
) -> None:
    for objects in rendered.values():
        client, metrics = ingress_rules(objects, "nats")
        users = sorted(
            r["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for r in client["from"]
        )
        assert users == ["accounts", "notifications", "orders"]
        assert client["ports"] == [{"port": "client", "protocol": "TCP"}]
        assert metrics == {
            "from": [m.FROM_MONITORING],
            "ports": [{"port": "metrics", "protocol": "TCP"}],
        }
        # The monitoring port (8222) is in no Service and no rule: the exporter reads it in the pod.
        service = find(objects, "Service", "nats")
        assert [p["name"] for p in service["spec"]["ports"]] == ["client", "metrics"]
        (sender,) = ingress_rules(objects, "mail-sink")
        assert sender["from"] == [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "notifications"}}}
        ]


def test_nats_keeps_jetstream_on_a_volume_and_is_probed_on_its_health_endpoint(
    rendered: dict[str, list[Obj]],
) -> None:
    nats = find(rendered["prod"], "StatefulSet", "nats")
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    server, exporter = nats["spec"]["template"]["spec"]["containers"]
    assert server["image"] == m.NATS_IMAGE
    store = server["args"][server["args"].index("--store_dir") + 1]
    assert {"name": claim["metadata"]["name"], "mountPath": store} in server["volumeMounts"]
    assert "--jetstream" in server["args"]
    monitor_port = int(server["args"][server["args"].index("--http_port") + 1])
    assert {"name": "monitor", "containerPort": monitor_port, "protocol": "TCP"} in server["ports"]
    probes = {p: server[p]["httpGet"] for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {g["port"] for g in probes.values()} == {"monitor"}
    assert {g["path"].split("?")[0] for g in probes.values()} == {"/healthz"}
    # The exporter reads the monitoring port over the pod's loopback; Prometheus calls it job nats.
    assert f"http://127.0.0.1:{monitor_port}" in exporter["command"]
    assert exporter["command"][:3] == ["python", "-m", "redline.nats_exporter"]
    assert "nats" in scraped_jobs(rendered["prod"])


def test_the_services_find_nats_and_notifications_finds_the_mail_sink(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["prod"]
    client = {p["name"]: p["port"] for p in find(objects, "Service", "nats")["spec"]["ports"]}
    smtp = find(objects, "Service", "mail-sink")["spec"]["ports"][0]["port"]
    for info in SERVICES.values():
        env = config_of(objects, find(objects, "Deployment", info.name))
        expected = f"nats://nats:{client['client']}" if info.uses_nats else None
        assert env.get("REDLINE_NATS_SERVERS") == expected, info.name
    env = config_of(objects, find(objects, "Deployment", "notifications"))
    assert (env["REDLINE_SMTP_HOST"], int(env["REDLINE_SMTP_PORT"])) == ("mail-sink", smtp)


def test_the_ops_port_is_a_config_value_reachable_only_from_the_namespace(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["prod"]
    for info in SERVICES.values():
        deployment = find(objects, "Deployment", info.name)
        ports = {
            p["name"]: p["containerPort"]
            for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        }
        config = config_of(objects, deployment)
        assert int(config["REDLINE_OPS_PORT"]) == ports["ops"] != ports["http"]
        assert int(config["REDLINE_PORT"]) == ports["http"] == info.port
        ops_rules = [
            r
            for r in ingress_rules(objects, info.name)
            if {"port": "ops", "protocol": "TCP"} in r["ports"]
        ]
        assert [r["from"] for r in ops_rules] == [[{"podSelector": {}}]]
        # The public port: only from the callers topology.py names (and Prometheus).
        callers = sorted(s.name for s in SERVICES.values() if info.name in s.calls)
        (public,) = [r for r in ingress_rules(objects, info.name) if r not in ops_rules]
        allowed = sorted(
            f["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            for f in public.get("from", [])
            if "podSelector" in f
        )
        assert allowed == callers


def test_the_grace_period_covers_pre_stop_drain_and_graceful_timeout(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay, objects in rendered.items():
        for info in SERVICES.values():
            deployment = find(objects, "Deployment", info.name)
            pod = deployment["spec"]["template"]["spec"]
            config = config_of(objects, deployment)
            pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
            needed = (
                pre_stop
                + float(config["REDLINE_DRAIN_SECONDS"])
                + float(config["REDLINE_GRACEFUL_TIMEOUT_SECONDS"])
            )
            assert pre_stop > 0
            assert float(config["REDLINE_DRAIN_SECONDS"]) > 0
            assert pod["terminationGracePeriodSeconds"] >= needed + 5, (overlay, info.name)


def test_probes_map_to_the_health_endpoints(rendered: dict[str, list[Obj]]) -> None:
    for info in SERVICES.values():
        container = find(rendered["prod"], "Deployment", info.name)["spec"]["template"]["spec"][
            "containers"
        ][0]
        paths = {
            p: container[p]["httpGet"]["path"]
            for p in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert paths == {
            "startupProbe": "/health/live",
            "livenessProbe": "/health/live",
            "readinessProbe": "/health/ready",
        }
        assert {container[p]["httpGet"]["port"] for p in paths} == {"http"}


def test_secrets_are_referenced_and_never_part_of_the_manifests(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["prod"]
    assert not [o for o in objects if o["kind"] == "Secret"]
    text = yaml.safe_dump_all(objects)
    assert "redline-docker-dev-secret" not in text
    for info in SERVICES.values():
        env = {
            e["name"]: e
            for e in find(objects, "Deployment", info.name)["spec"]["template"]["spec"][
                "containers"
            ][0]["env"]
        }
        refs = {
            n: e["valueFrom"]["secretKeyRef"]
            for n, e in env.items()
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        if info.has_database:
            assert refs["DATABASE_URL"] == {"name": f"{info.name}-db", "key": "url"}
        if info.name in ("gateway", "accounts", "orders"):
            assert refs["REDLINE_JWT_SECRET"] == {"name": "redline-app", "key": "jwt-secret"}
        assert "optional" not in refs.get("REDLINE_JWT_SECRET", {})


def test_prometheus_rules_are_the_files_prometheus_loads(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["prod"]
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    expected = {
        str(p.relative_to(m.ROOT)): yaml.safe_load(p.read_text(encoding="utf-8"))["groups"]
        for p in rule_files()
    }
    assert len(expected) >= 5
    assert {
        r["metadata"]["annotations"]["redline.io/source"]: r["spec"]["groups"] for r in rules
    } == expected


def test_every_service_is_scraped_under_its_own_name_as_job(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["prod"]
    for info in SERVICES.values():
        monitor = find(objects, "ServiceMonitor", info.name)
        selected = [
            s
            for s in objects
            if s["kind"] == "Service"
            and monitor["spec"]["selector"]["matchLabels"].items()
            <= s["metadata"].get("labels", {}).items()
        ]
        # Exactly one Service (not the headless one too: every pod would be
        # scraped twice), named as the job the rules and dashboards select.
        assert [s["metadata"]["name"] for s in selected] == [info.name]
        assert monitor["spec"]["endpoints"][0]["port"] == "http"
        assert "relabelings" not in monitor["spec"]["endpoints"][0]


def test_dashboards_are_configmaps_for_the_grafana_sidecar(rendered: dict[str, list[Obj]]) -> None:
    maps = [
        o
        for o in rendered["prod"]
        if o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    generated = sorted(m.DASHBOARDS_DIR.glob("*.json"))
    assert len(maps) == len(generated) >= 4
    for cm, path in zip(maps, generated, strict=True):
        assert cm["data"] == {path.name: path.read_text(encoding="utf-8")}
        json.loads(cm["data"][path.name])


def test_the_collector_roles_use_the_repository_config(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["prod"]
    for prefix, path in (
        ("otelcol-config-", m.COLLECTOR_CONFIG),
        ("jaeger-config-", m.JAEGER_CONFIG),
    ):
        (config_map,) = [o for o in objects if o["metadata"]["name"].startswith(prefix)]
        assert config_map["data"]["config.yaml"].endswith(path.read_text(encoding="utf-8"))
    source = m.COLLECTOR_CONFIG.read_text(encoding="utf-8")
    agent = find(objects, "DaemonSet", "otel-agent")
    gateway = find(objects, "Deployment", "otel-collector")

    def env(o: Obj) -> dict[str, str]:
        return {
            e["name"]: e["value"] for e in o["spec"]["template"]["spec"]["containers"][0]["env"]
        }

    assert env(agent)["OTELCOL_TRACES_ENDPOINT"] == "otel-collector:4317"
    assert env(gateway)["OTELCOL_TRACES_ENDPOINT"] == "jaeger:4317"
    # Every ${env:VAR} the manifests set is one the config reads.
    for name in {*env(agent), *env(gateway)}:
        assert f"${{env:{name}:-" in source, name
    assert find(objects, "Service", "otel-agent")["spec"]["internalTrafficPolicy"] == "Local"


def test_the_migrate_init_containers_of_two_replicas_apply_the_migrations_once(
    rendered: dict[str, list[Obj]], new_database: Callable[[str], str]
) -> None:
    """Two pods starting at once: their init containers run the script against one database."""
    init = find(rendered["prod"], "Deployment", "accounts")["spec"]["template"]["spec"][
        "initContainers"
    ][0]
    assert init["command"][:2] == ["python", "-c"]
    env = {**os.environ, "DATABASE_URL": new_database("kube_migrate")}
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, *init["command"][1:]]
    replicas = [
        subprocess.Popen(
            argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [replica.communicate(timeout=60) for replica in replicas]
    assert [r.returncode for r in replicas] == [0, 0], [err for _, err in outputs]
    applied, nothing = sorted((out.strip() for out, _ in outputs), key=lambda line: "none" in line)
    # One applied the migrations; the other waited on the lock and found nothing to do.
    assert applied.startswith("migrations applied: ['0001_"), applied
    assert nothing == "migrations applied: none"


@pytest.mark.parametrize(
    ("kind", "name", "program"),
    [
        ("DaemonSet", "otel-agent", "otelcol"),
        ("Deployment", "otel-collector", "otelcol"),
        ("Deployment", "jaeger", "jaeger"),
    ],
)
def test_the_real_program_validates_its_config_with_the_pods_environment(
    rendered: dict[str, list[Obj]], tmp_path: Path, kind: str, name: str, program: str
) -> None:
    objects = rendered["prod"]
    pod = find(objects, kind, name)["spec"]["template"]["spec"]
    (config_volume,) = [v for v in pod["volumes"] if "configMap" in v]
    config = find(objects, "ConfigMap", config_volume["configMap"]["name"])["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(config, encoding="utf-8")
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    # Every variable the pod sets is one the config reads.
    assert all(f"${{env:{variable}:-" in config for variable in env), env
    result = subprocess.run(
        [str(go_binary(program)), "validate", f"--config={path}"],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_gateway_scales_on_a_series_the_services_export(rendered: dict[str, list[Obj]]) -> None:
    hpa = find(rendered["prod"], "HorizontalPodAutoscaler", "gateway")
    (custom,) = [metric for metric in hpa["spec"]["metrics"] if metric["type"] == "Pods"]
    name = custom["pods"]["metric"]["name"]
    catalog = yaml.safe_load((m.ROOT / "alerts" / "metrics_catalog.yaml").read_text("utf-8"))
    # A gauge the gateway exports: an average per pod means something.
    assert catalog["metrics"][name]["type"] == "gauge"
    exporters = catalog["metrics"][name]["exported_by"]
    assert "gateway" in [job for group in exporters for job in catalog["job_groups"][group]]
    assert custom["pods"]["target"]["type"] == "AverageValue"


def test_the_monitoring_stack_values_match_the_manifests(rendered: dict[str, list[Obj]]) -> None:
    """The Helm values for the monitoring namespace (not installed here) name what the manifests serve."""
    values_dir = m.ROOT / "deploy" / "kubernetes" / "helm-values"
    stack = yaml.safe_load((values_dir / "kube-prometheus-stack.yaml").read_text("utf-8"))
    adapter = yaml.safe_load((values_dir / "prometheus-adapter.yaml").read_text("utf-8"))
    objects = rendered["prod"]
    grafana = stack["grafana"]
    assert grafana["sidecar"]["datasources"]["uid"] == PROMETHEUS_DATASOURCE["uid"]
    (jaeger_source,) = grafana["additionalDataSources"]
    jaeger_port = {
        p["name"]: p["port"] for p in find(objects, "Service", "jaeger")["spec"]["ports"]
    }["query-http"]
    assert jaeger_source["url"] == f"http://jaeger.{generate.NAMESPACE}.svc:{jaeger_port}"
    assert (
        grafana["sidecar"]["datasources"]["exemplarTraceIdDestinations"]["datasourceUid"]
        == (jaeger_source["uid"])
    )
    sidecar = grafana["sidecar"]["dashboards"]
    dashboard = next(o for o in objects if "grafana_dashboard" in o["metadata"].get("labels", {}))
    assert dashboard["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"]
    assert sidecar["folderAnnotation"] in dashboard["metadata"]["annotations"]
    (rule,) = adapter["rules"]["custom"]
    hpa = find(objects, "HorizontalPodAutoscaler", "gateway")
    (custom,) = [metric for metric in hpa["spec"]["metrics"] if metric["type"] == "Pods"]
    assert rule["name"]["as"] == custom["pods"]["metric"]["name"]
    assert rule["seriesQuery"].startswith(custom["pods"]["metric"]["name"] + "{")
    assert f"{adapter['prometheus']['url']}:{adapter['prometheus']['port']}" == m.PROMETHEUS_URL


def scraped_jobs(objects: list[Obj]) -> set[str]:
    """The `job` label of every target the ServiceMonitors make (the Service's name unless relabelled)."""
    jobs = set()
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        services = [
            s["metadata"]["name"]
            for s in objects
            if s["kind"] == "Service" and wanted <= s["metadata"].get("labels", {}).items()
        ]
        for endpoint in monitor["spec"]["endpoints"]:
            relabelled = [
                r["replacement"]
                for r in endpoint.get("relabelings", [])
                if r.get("targetLabel") == "job"
            ]
            jobs.update(relabelled or services)
    return jobs


def test_every_job_the_rules_and_dashboards_name_is_scraped(
    rendered: dict[str, list[Obj]],
) -> None:
    sources = [*rule_files(), *sorted(m.DASHBOARDS_DIR.glob("*.json"))]
    named = {
        job
        for path in sources
        for job in re.findall(r'job=\\?"([a-z-]+)\\?"', path.read_text(encoding="utf-8"))
    }
    assert {"gateway", "otel-collector", "spanmetrics"} <= named
    assert named <= scraped_jobs(rendered["prod"])


def pod_environment(objects: list[Obj], deployment: Obj) -> dict[str, str]:
    """What the service's process sees: its ConfigMap, its env, Secrets filled with strong stand-ins."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = dict(config_of(objects, deployment))
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = (
                f"postgresql://redline:pw@{ref['name'].removesuffix('-db')}-postgres:5432/db"
                if ref["key"] == "url"
                else "k8s-test-" + "x" * 48
            )
    return env


def settings_class(name: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{name}.app")
    (cls,) = [
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, ServiceSettings)
        and v.__module__ == module.__name__  # not the shared bases it imports
    ]
    return cls


@pytest.mark.parametrize("name", list(SERVICES))
def test_each_service_accepts_its_pod_environment(
    rendered: dict[str, list[Obj]], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """The service's own settings classes read the pod's environment without a config error."""
    objects = rendered["prod"]
    env = pod_environment(objects, find(objects, "Deployment", name))
    for variable in list(os.environ):
        if variable.startswith(("REDLINE_", "OTEL_")) or variable == "DATABASE_URL":
            monkeypatch.delenv(variable)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    settings = settings_class(name)()
    assert settings.port == SERVICES[name].port
    assert settings.host == "0.0.0.0"
    assert settings.drain_seconds == m.SHUTDOWN.drain_seconds
    assert settings.graceful_timeout_seconds == m.SHUTDOWN.graceful_timeout_seconds
    assert (settings.database_url is not None) == SERVICES[name].has_database
    # The ops listener's settings (the edge change; absent before it lands).
    if hasattr(settings, "ops_listen_port"):
        assert settings.ops_listen_port == int(env["REDLINE_OPS_PORT"]) != settings.port
    if hasattr(settings, "nats_servers"):
        assert settings.nats_servers == "nats://nats:4222"
    dependencies = dependency_configs(name, env)
    assert sorted(dependencies) == sorted(SERVICES[name].calls)
    for dep, config in dependencies.items():
        # The headless Service, re-resolved: the caller balances over the pods.
        assert config.base_url == f"http://{dep}-headless:{SERVICES[dep].port}"
        assert config.dns_refresh_seconds == m.DNS_REFRESH_SECONDS
        # Resolved before a stopping pod's drain starts (its preStop).
        assert m.SHUTDOWN.pre_stop_seconds >= m.DNS_REFRESH_SECONDS


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[duration[-1]]


def test_every_rate_window_in_the_rules_spans_four_scrapes(rendered: dict[str, list[Obj]]) -> None:
    """rate() needs two samples; four leave room for a missed scrape."""
    intervals = {
        seconds(endpoint["interval"])
        for monitor in rendered["prod"]
        if monitor["kind"] == "ServiceMonitor"
        for endpoint in monitor["spec"]["endpoints"]
    }
    windows = {
        seconds(window)
        for rule in rendered["prod"]
        if rule["kind"] == "PrometheusRule"
        for window in re.findall(r"\[(\d+[smhd])\]", json.dumps(rule["spec"]))
    }
    assert intervals
    assert windows
    assert min(windows) >= 4 * max(intervals), (min(windows), max(intervals))
