"""The Kubernetes objects of the base, built from the sources the rest of Redline uses.

* the services, their ports and who calls whom: ``services/topology.py``
  (Deployments, Services, ConfigMaps, NetworkPolicies follow the call graph);
* the rules Prometheus loads: ``alerts.paths.rule_files()`` (one PrometheusRule
  per file, the file's groups verbatim);
* the dashboards: ``dashboards/generated/*.json`` (one ConfigMap each, for the
  Grafana sidecar);
* the Collector's and Jaeger's configs: ``telemetry/collector/otelcol.yaml`` and
  ``telemetry/jaeger/jaeger.yaml`` (copied beside the kustomization, which may
  only read files under its own folder; ``${env:...}`` set per role here).

Every number below carries its reason. ``generate.py`` writes the objects as
YAML under ``base/``; a test fails when the committed files are stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alerts.paths import rule_files
from services.topology import SERVICES, ServiceInfo

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "dashboards" / "generated"
COLLECTOR_CONFIG = ROOT / "telemetry" / "collector" / "otelcol.yaml"
JAEGER_CONFIG = ROOT / "telemetry" / "jaeger" / "jaeger.yaml"

Obj = dict[str, Any]

PART_OF = "redline"
# Prometheus (Prometheus Operator, e.g. kube-prometheus-stack) runs in this
# namespace: the NetworkPolicies let it scrape, Jaeger reads span metrics from it.
MONITORING_NAMESPACE = "monitoring"
PROMETHEUS_URL = f"http://prometheus-operated.{MONITORING_NAMESPACE}.svc:9090"

# The admin API's own listener (REDLINE_OPS_HOST/REDLINE_OPS_PORT, the public
# port plus 100, as the ops-listener change in services/chassis defines it).
OPS_PORT_OFFSET = 100

# The images: the Dockerfile at the root, the Collector distribution's
# Dockerfile, and the releases compose runs. Overlays set registries and tags.
IMAGE = "redline"
COLLECTOR_IMAGE = "redline-otelcol"
JAEGER_IMAGE = "jaegertracing/jaeger:2.12.0"
POSTGRES_IMAGE = "postgres:18.4-alpine"
# The Dockerfile's user; the Collector image's; postgres:*-alpine's `postgres`.
APP_UID = 10001
POSTGRES_UID = 70


# How often callers re-resolve a dependency's headless Service: the pod's
# preStop (5 s) covers it, so a stopping pod is out of its callers' lists
# before its drain starts (and a stale entry costs a refused connection that
# fails over at once, never a request).
DNS_REFRESH_SECONDS = 5


@dataclass(frozen=True)
class Shutdown:
    """How a pod stops, in the order it happens; the grace period covers all of it.

    1. ``preStop`` sleeps while the endpoint removal reaches kube-proxy and the
       peers that cache DNS answers of the headless Service: the pod still
       serves as if nothing happened;
    2. SIGTERM: the service reports not-ready and keeps serving for
       ``REDLINE_DRAIN_SECONDS`` (peers that watch readiness move away);
    3. in-flight requests get ``REDLINE_GRACEFUL_TIMEOUT_SECONDS`` to finish;
    4. spans are flushed and the pool closed (``margin``).
    """

    pre_stop_seconds: int = 5
    drain_seconds: int = 5
    graceful_timeout_seconds: int = 20
    margin_seconds: int = 5

    @property
    def grace_period_seconds(self) -> int:
        return (
            self.pre_stop_seconds
            + self.drain_seconds
            + self.graceful_timeout_seconds
            + self.margin_seconds
        )


SHUTDOWN = Shutdown()

# benchmarks/stack_memory.py: every service 69-71 MiB PSS at rest. The request
# is about twice that (a full pool, buffers under load); the limit twice again. One
# uvicorn worker does its work on one Python thread (the span exporter's is
# light), so a limit of 1 CPU hardly ever throttles it. 250m requested: the
# e2e benchmark (benchmarks/e2e_orders.py) keeps two cores busy with five
# services and PostgreSQL at ~50 orders/s, about 0.3-0.4 core per service.
SERVICE_RESOURCES: Obj = {
    "requests": {"cpu": "250m", "memory": "128Mi"},
    "limits": {"cpu": "1", "memory": "256Mi"},
}
# The migrations init container: one connection, a few SQL files.
MIGRATE_RESOURCES: Obj = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"cpu": "500m", "memory": "128Mi"},
}
# stack_memory.py: PostgreSQL with four databases, 56 MiB PSS at rest; its
# shared_buffers (128 MiB by default) fill as the data is read.
POSTGRES_RESOURCES: Obj = {
    "requests": {"cpu": "100m", "memory": "192Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}
# The Collector (stack_memory.py: 64 MiB at rest) refuses data at its
# memory_limiter before the kernel kills it: OTELCOL_MEMORY_LIMIT_MIB is 80 %
# of the container's limit (spike 20 %).
AGENT_MEMORY_LIMIT_MIB = 256
GATEWAY_MEMORY_LIMIT_MIB = 512
# Jaeger: 60 MiB at rest (stack_memory.py), plus up to 50,000 traces in memory.
JAEGER_RESOURCES: Obj = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}


def labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
    }


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def meta(name: str, component: str, **extra: Any) -> Obj:
    return {"name": name, "labels": labels(name, component), **extra}


# --------------------------------------------------------------- pod pieces
def restricted_security_context(uid: int) -> Obj:
    """The container half of the Pod Security Standards' `restricted` profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context(uid: int) -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probe(path: str, port: str, *, period: int, failures: int, timeout: int = 2) -> Obj:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def tmp_volume() -> tuple[Obj, Obj]:
    """A writable /tmp on a read-only root filesystem."""
    return {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108


def secret_env(name: str, secret: str, key: str) -> Obj:
    """A variable from a Secret the operator creates: never a value in these files."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


# ------------------------------------------------------------------ services
def ops_port(info: ServiceInfo) -> int:
    return info.port + OPS_PORT_OFFSET


def db_secret(info: ServiceInfo) -> str:
    return f"{info.name}-db"


APP_SECRET = "redline-app"  # noqa: S105 (a Secret's name; keys: jwt-secret, admin-token)
# The services that sign or verify access tokens.
TOKEN_SERVICES = ("gateway", "accounts", "orders")


def service_config(info: ServiceInfo) -> dict[str, str]:
    """The service's ConfigMap: everything but secrets (services/chassis/config.py)."""
    env = {
        "REDLINE_HOST": "0.0.0.0",
        "REDLINE_PORT": str(info.port),
        # The ops listener, reachable from inside the namespace only (NetworkPolicy).
        "REDLINE_OPS_HOST": "0.0.0.0",
        "REDLINE_OPS_PORT": str(ops_port(info)),
        "REDLINE_ENVIRONMENT": "kubernetes",
        "REDLINE_LOG_LEVEL": "INFO",
        "REDLINE_DRAIN_SECONDS": str(SHUTDOWN.drain_seconds),
        "REDLINE_GRACEFUL_TIMEOUT_SECONDS": str(SHUTDOWN.graceful_timeout_seconds),
    }
    for dep in info.calls:
        dep_info = SERVICES[dep]
        # The headless Service: one address per ready pod, re-resolved every
        # DNS_REFRESH_SECONDS, so the caller balances over the pods itself and
        # ejects a failing one (services/chassis/discovery.py); a ClusterIP
        # would hide the pods behind one address, balanced per connection.
        env[dep_info.url_variable] = f"http://{dep}-headless:{dep_info.port}"
        env[f"REDLINE_{dep.upper()}_DNS_REFRESH_SECONDS"] = str(DNS_REFRESH_SECONDS)
    env.update(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            # The agent on the same node (the Service's internalTrafficPolicy: Local).
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-agent:4318",
            "OTEL_BSP_SCHEDULE_DELAY": "1000",
        }
    )
    return env


def service_deployment(info: ServiceInfo) -> Obj:
    name = info.name
    volume, mount = tmp_volume()
    env: list[Obj] = [
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("NODE_NAME", "spec.nodeName"),
        {
            "name": "OTEL_RESOURCE_ATTRIBUTES",
            "value": "service.namespace=redline,k8s.namespace.name=$(POD_NAMESPACE),"
            "k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE_NAME)",
        },
    ]
    if info.has_database:
        env.append(secret_env("DATABASE_URL", db_secret(info), "url"))
    if name in TOKEN_SERVICES:
        env.append(secret_env("REDLINE_JWT_SECRET", APP_SECRET, "jwt-secret"))
    env.append(
        {
            "name": "REDLINE_ADMIN_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": APP_SECRET, "key": "admin-token", "optional": True}
            },
        }
    )
    container: Obj = {
        "name": name,
        "image": IMAGE,
        "command": ["python", "-m", f"services.{name}"],
        "ports": [
            {"name": "http", "containerPort": info.port, "protocol": "TCP"},
            {"name": "ops", "containerPort": ops_port(info), "protocol": "TCP"},
        ],
        "envFrom": [{"configMapRef": {"name": f"{name}-config"}}],
        "env": env,
        "resources": SERVICE_RESOURCES,
        # Up once the event loop answers; the database is the init container's
        # business, so a minute is plenty (PostgreSQL slow to come back included).
        "startupProbe": http_probe("/health/live", "http", period=2, failures=30),
        "livenessProbe": http_probe("/health/live", "http", period=10, failures=3),
        "readinessProbe": http_probe("/health/ready", "http", period=5, failures=2),
        "lifecycle": {"preStop": {"sleep": {"seconds": SHUTDOWN.pre_stop_seconds}}},
        "securityContext": restricted_security_context(APP_UID),
        "volumeMounts": [mount],
    }
    init: list[Obj] = []
    if info.has_database:
        # The same migrations the service runs at start-up, under the same
        # advisory lock (services/chassis/migrations.py): replicas starting at
        # once wait for each other, and a broken migration shows as
        # Init:CrashLoopBackOff instead of a pod that never turns ready.
        init.append(
            {
                "name": "migrate",
                "image": IMAGE,
                "command": ["python", "-c", MIGRATE_SCRIPT, name],
                "env": [secret_env("DATABASE_URL", db_secret(info), "url")],
                "resources": MIGRATE_RESOURCES,
                "securityContext": restricted_security_context(APP_UID),
                "volumeMounts": [mount],
            }
        )
    spec: Obj = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(APP_UID),
        "terminationGracePeriodSeconds": SHUTDOWN.grace_period_seconds,
        "containers": [container],
        "volumes": [volume],
    }
    if init:
        spec["initContainers"] = init
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, "service"),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(name)},
            # One new pod ready before an old one goes: no capacity dip.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": {"labels": labels(name, "service")}, "spec": spec},
        },
    }


# `python -c MIGRATE_SCRIPT <service>`: applies services/<service>/migrations
# once, waiting up to a minute for PostgreSQL; exits non-zero on failure.
MIGRATE_SCRIPT = """\
import asyncio, importlib, os, sys, time
from pathlib import Path
import asyncpg
from services.chassis.migrations import migrate

async def main(service):
    package = importlib.import_module(f"services.{service}")
    directory = Path(package.__file__).parent / "migrations"
    deadline = time.monotonic() + 60
    while True:
        try:
            conn = await asyncpg.connect(os.environ["DATABASE_URL"], timeout=5)
            break
        except (OSError, asyncpg.CannotConnectNowError) as exc:
            if time.monotonic() > deadline:
                raise
            print(f"waiting for PostgreSQL: {exc}", flush=True)
            await asyncio.sleep(2)
    try:
        print("migrations applied:", await migrate(conn, directory) or "none", flush=True)
    finally:
        await conn.close()

asyncio.run(main(sys.argv[1]))
"""


def service_objects(info: ServiceInfo) -> list[Obj]:
    name = info.name
    ports = [
        {"name": "http", "port": info.port, "targetPort": "http", "protocol": "TCP"},
        {"name": "ops", "port": ops_port(info), "targetPort": "ops", "protocol": "TCP"},
    ]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            **meta(name, "service"),
            "labels": {**labels(name, "service"), "redline.io/scrape": "true"},
        },
        "spec": {"type": "ClusterIP", "selector": selector(name), "ports": ports},
    }
    # One DNS A record per ready pod: the endpoint list a client-side balancer
    # re-resolves: REDLINE_<DEP>_URL names <dep>-headless (service_config).
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(f"{name}-headless", "service"),
        "spec": {
            "clusterIP": "None",
            "selector": selector(name),
            "ports": [ports[0]],
        },
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(name, "service"),
        "automountServiceAccountToken": False,
    }
    # maxUnavailable, not minAvailable: with one replica a node drain may still
    # evict it (minAvailable: 1 would block the drain forever).
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(name, "service"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(name)}},
    }
    return [
        account,
        service_deployment(info),
        service,
        headless,
        pdb,
        hpa(info),
        service_network_policy(info),
        service_monitor(name, "http", selector={**selector(name), "redline.io/scrape": "true"}),
    ]


# CPU utilisation is relative to the request (250m): 70 % is ~175m sustained.
HPA_CPU_PERCENT = 70
HPA_MAX_REPLICAS = 4
# The gateway also scales on requests in flight per pod, a Prometheus series
# served through prometheus-adapter's custom metrics API (rule in the README):
# one event loop answering more than this many at once is queueing.
GATEWAY_IN_FLIGHT_PER_POD = "16"


def hpa(info: ServiceInfo) -> Obj:
    metrics: list[Obj] = [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": HPA_CPU_PERCENT},
            },
        }
    ]
    if info.name == "gateway":
        metrics.append(
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": "http_server_active_requests"},
                    "target": {"type": "AverageValue", "averageValue": GATEWAY_IN_FLIGHT_PER_POD},
                },
            }
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(info.name, "service"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": info.name},
            "minReplicas": 1,
            "maxReplicas": HPA_MAX_REPLICAS,
            "metrics": metrics,
            # Scale in slowly: a drained pod costs its in-flight work nothing,
            # but flapping costs start-ups.
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def callers(name: str) -> list[str]:
    return [s.name for s in SERVICES.values() if name in s.calls]


def from_pods(name: str) -> Obj:
    return {"podSelector": {"matchLabels": selector(name)}}


FROM_NAMESPACE: Obj = {"podSelector": {}}
FROM_MONITORING: Obj = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}}
}


def network_policy(name: str, component: str, rules: list[Obj]) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(name, component),
        "spec": {
            "podSelector": {"matchLabels": selector(name)},
            "policyTypes": ["Ingress"],
            "ingress": rules,
        },
    }


def service_network_policy(info: ServiceInfo) -> Obj:
    http = [{"port": "http", "protocol": "TCP"}]
    # The gateway is the public entry (from anywhere: an Ingress controller, a
    # LoadBalancer); every other service only from the services that call it
    # (services/topology.py) and Prometheus (/metrics is on the public port).
    public: Obj = (
        {"ports": http}
        if not callers(info.name)
        else {"from": [*map(from_pods, callers(info.name)), FROM_MONITORING], "ports": http}
    )
    return network_policy(
        info.name,
        "service",
        [public, {"from": [FROM_NAMESPACE], "ports": [{"port": "ops", "protocol": "TCP"}]}],
    )


def service_monitor(
    name: str, port: str, *, selector: dict[str, str], job: str | None = None
) -> Obj:
    endpoint: Obj = {"port": port, "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}
    if job is not None:
        endpoint["relabelings"] = [{"targetLabel": "job", "replacement": job}]
    # job = the Service's name = the service's name, which rules and dashboards select on.
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(name if job is None else job, "monitoring"),
        "spec": {"selector": {"matchLabels": selector}, "endpoints": [endpoint]},
    }


# ----------------------------------------------------------------- databases
# Under the volume's mount point: initdb wants an empty directory it owns.
PGDATA = "/var/lib/postgresql/data/pgdata"


def database_objects(info: ServiceInfo) -> list[Obj]:
    name = f"{info.name}-postgres"
    volume, mount = tmp_volume()
    container: Obj = {
        "name": "postgres",
        "image": POSTGRES_IMAGE,
        "ports": [{"name": "postgres", "containerPort": 5432, "protocol": "TCP"}],
        "env": [
            {"name": "POSTGRES_USER", "value": "redline"},
            {"name": "POSTGRES_DB", "value": f"redline_{info.name}"},
            secret_env("POSTGRES_PASSWORD", db_secret(info), "password"),
            {"name": "PGDATA", "value": PGDATA},
        ],
        "resources": POSTGRES_RESOURCES,
        # Kubernetes stops a container with SIGTERM, PostgreSQL's "smart"
        # shutdown, which waits for the services' pooled connections to close;
        # a fast shutdown first (the image's own STOPSIGNAL is SIGINT, which
        # Kubernetes does not use) rolls back open transactions and exits cleanly.
        "lifecycle": {
            "preStop": {
                "exec": {
                    "command": ["pg_ctl", "stop", "-D", PGDATA, "-m", "fast", "-w", "-t", "50"]
                }
            }
        },
        "startupProbe": pg_probe(period=2, failures=60),
        "livenessProbe": pg_probe(period=10, failures=6),
        "readinessProbe": pg_probe(period=5, failures=2),
        "securityContext": restricted_security_context(POSTGRES_UID),
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            mount,
        ],
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(name, "database"),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": selector(name)},
            "template": {
                "metadata": {"labels": labels(name, "database")},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(POSTGRES_UID),
                    # The preStop's fast shutdown (at most 50 s) and then some.
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                    "volumes": [volume, {"name": "run", "emptyDir": {}}],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, "database"),
        "spec": {
            "selector": selector(name),
            "ports": [
                {"name": "postgres", "port": 5432, "targetPort": "postgres", "protocol": "TCP"}
            ],
        },
    }
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(name, "database"),
        "automountServiceAccountToken": False,
    }
    # The database only from its own service's pods (the migrate init container included).
    policy = network_policy(
        name,
        "database",
        [{"from": [from_pods(info.name)], "ports": [{"port": "postgres", "protocol": "TCP"}]}],
    )
    return [account, statefulset, service, policy]


def pg_probe(*, period: int, failures: int) -> Obj:
    return {
        "exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "redline"]},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


# ----------------------------------------------------------------- telemetry
def collector_env(role: str, memory_limit_mib: int) -> list[Obj]:
    """The ``${env:...}`` of otelcol.yaml for one role (defaults are compose's)."""
    traces = "otel-collector:4317" if role == "agent" else "jaeger:4317"
    return [
        {"name": "OTELCOL_TRACES_ENDPOINT", "value": traces},
        {"name": "OTELCOL_MEMORY_LIMIT_MIB", "value": str(memory_limit_mib * 8 // 10)},
        {"name": "OTELCOL_MEMORY_SPIKE_MIB", "value": str(memory_limit_mib * 2 // 10)},
        # No log store in these manifests and no node log files read (see the
        # README): parsed OTLP log records go to the debug exporter.
        {"name": "OTELCOL_LOGS_EXPORTER", "value": "debug/logs"},
        {"name": "OTELCOL_LOG_FILES", "value": "/tmp/no-log-files/*.log"},  # noqa: S108
    ]


COLLECTOR_PORTS = (
    ("otlp-grpc", 4317),
    ("otlp-http", 4318),
    ("metrics", 8888),
    ("spanmetrics", 8889),
    ("health", 13133),
)


def collector_pod(name: str, role: str, memory_limit_mib: int) -> Obj:
    volume, mount = tmp_volume()
    return {
        "metadata": {"labels": labels(name, "telemetry")},
        "spec": {
            "serviceAccountName": name,
            "automountServiceAccountToken": False,
            "securityContext": pod_security_context(APP_UID),
            "terminationGracePeriodSeconds": 30,
            "containers": [
                {
                    "name": "otelcol",
                    "image": COLLECTOR_IMAGE,
                    "args": ["--config=/etc/otelcol-redline/config.yaml"],
                    "ports": [
                        {"name": n, "containerPort": p, "protocol": "TCP"}
                        for n, p in COLLECTOR_PORTS
                    ],
                    "env": collector_env(role, memory_limit_mib),
                    "resources": {
                        "requests": {"cpu": "100m", "memory": f"{memory_limit_mib // 2}Mi"},
                        "limits": {"cpu": "1", "memory": f"{memory_limit_mib}Mi"},
                    },
                    "startupProbe": http_probe("/", "health", period=2, failures=30),
                    "livenessProbe": http_probe("/", "health", period=10, failures=3),
                    "readinessProbe": http_probe("/", "health", period=5, failures=2),
                    "securityContext": restricted_security_context(APP_UID),
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/otelcol-redline", "readOnly": True},
                        mount,
                    ],
                }
            ],
            "volumes": [{"name": "config", "configMap": {"name": "otelcol-config"}}, volume],
        },
    }


def collector_objects() -> list[Obj]:
    """Two roles, one config file: a node agent and a gateway.

    agent (DaemonSet): the services' OTLP endpoint on their own node
    (``otel-agent``, internalTrafficPolicy: Local), batching and retrying
    close to them; forwards to the gateway. gateway (Deployment
    ``otel-collector``): exports to Jaeger and derives the span metrics
    Prometheus scrapes. The config being one file, the agent computes span
    metrics too; nothing scrapes them (the gateway's are complete).
    """
    agent, gateway = "otel-agent", "otel-collector"
    out: list[Obj] = []
    for name in (agent, gateway):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": meta(name, "telemetry"),
                "automountServiceAccountToken": False,
            }
        )
    out.append(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta(agent, "telemetry"),
            "spec": {
                "selector": {"matchLabels": selector(agent)},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": collector_pod(agent, "agent", AGENT_MEMORY_LIMIT_MIB),
            },
        }
    )
    out.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(gateway, "telemetry"),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector(gateway)},
                "template": collector_pod(gateway, "gateway", GATEWAY_MEMORY_LIMIT_MIB),
            },
        }
    )
    for name, extra in ((agent, {"internalTrafficPolicy": "Local"}), (gateway, {})):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta(name, "telemetry"),
                "spec": {
                    "selector": selector(name),
                    **extra,
                    "ports": [
                        {"name": n, "port": p, "targetPort": n, "protocol": "TCP"}
                        for n, p in COLLECTOR_PORTS
                    ],
                },
            }
        )
    otlp = [{"port": "otlp-grpc", "protocol": "TCP"}, {"port": "otlp-http", "protocol": "TCP"}]
    metrics = [{"port": "metrics", "protocol": "TCP"}, {"port": "spanmetrics", "protocol": "TCP"}]
    out.append(
        network_policy(
            agent,
            "telemetry",
            [
                {"from": [FROM_NAMESPACE], "ports": otlp},
                {"from": [FROM_MONITORING], "ports": metrics},
            ],
        )
    )
    out.append(
        network_policy(
            gateway,
            "telemetry",
            [
                {"from": [from_pods(agent)], "ports": otlp},
                {"from": [FROM_MONITORING], "ports": metrics},
            ],
        )
    )
    out.append(service_monitor(agent, "metrics", selector=selector(agent)))
    out.append(service_monitor(gateway, "metrics", selector=selector(gateway)))
    out.append(
        service_monitor(gateway, "spanmetrics", selector=selector(gateway), job="spanmetrics")
    )
    return out


JAEGER_PORTS = (
    ("otlp-grpc", 4317),
    ("query-http", 16686),
    ("query-grpc", 16685),
    ("metrics", 8888),
    ("health", 13133),
)


def jaeger_objects() -> list[Obj]:
    name = "jaeger"
    volume, mount = tmp_volume()
    container: Obj = {
        "name": "jaeger",
        "image": JAEGER_IMAGE,
        "args": ["--config", "/etc/jaeger/config.yaml"],
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in JAEGER_PORTS],
        "env": [
            # Jaeger's Monitor tab reads the span metrics from Prometheus.
            {"name": "JAEGER_PROMETHEUS_URL", "value": PROMETHEUS_URL},
            {"name": "JAEGER_MAX_TRACES", "value": "50000"},
        ],
        "resources": JAEGER_RESOURCES,
        "startupProbe": http_probe("/status", "health", period=2, failures=30),
        "livenessProbe": http_probe("/status", "health", period=10, failures=3),
        "readinessProbe": http_probe("/status", "health", period=5, failures=2),
        "securityContext": restricted_security_context(APP_UID),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/jaeger", "readOnly": True},
            mount,
        ],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(name, "telemetry"),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(name, "telemetry"),
            "spec": {
                # The memory store is per process: one replica, replaced at once.
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector(name)},
                "template": {
                    "metadata": {"labels": labels(name, "telemetry")},
                    "spec": {
                        "serviceAccountName": name,
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security_context(APP_UID),
                        "containers": [container],
                        "volumes": [
                            {"name": "config", "configMap": {"name": "jaeger-config"}},
                            volume,
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(name, "telemetry"),
            "spec": {
                "selector": selector(name),
                "ports": [
                    {"name": n, "port": p, "targetPort": n, "protocol": "TCP"}
                    for n, p in JAEGER_PORTS
                ],
            },
        },
        network_policy(
            name,
            "telemetry",
            [
                {"from": [from_pods("otel-collector")], "ports": [{"port": "otlp-grpc"}]},
                # The UI and query API: from the namespace (and `kubectl port-forward`),
                # and from Grafana's Jaeger data source in the monitoring namespace.
                {
                    "from": [FROM_NAMESPACE, FROM_MONITORING],
                    "ports": [{"port": "query-http"}, {"port": "query-grpc"}],
                },
                {"from": [FROM_MONITORING], "ports": [{"port": "metrics"}]},
            ],
        ),
        service_monitor(name, "metrics", selector=selector(name)),
    ]


# ---------------------------------------------------------------- monitoring
def prometheus_rules() -> list[Obj]:
    """One PrometheusRule per rules file Prometheus loads in production."""
    out = []
    for path in rule_files():
        groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        stem = path.stem if path.parent.name == "rules" else f"slo-{path.stem}"
        out.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PrometheusRule",
                "metadata": {
                    **meta(f"redline-{stem}", "monitoring"),
                    "annotations": {"redline.io/source": str(path.relative_to(ROOT))},
                },
                "spec": {"groups": groups},
            }
        )
    return out


def dashboard_configmaps() -> list[Obj]:
    """dashboards/generated/*.json, one ConfigMap each, for Grafana's sidecar."""
    out = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        json.loads(text)  # a broken file fails here, not in Grafana
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"dashboard-{path.stem}",
                    "labels": {**labels(path.stem, "monitoring"), "grafana_dashboard": "1"},
                    "annotations": {
                        "grafana_folder": "Redline",
                        "redline.io/source": str(path.relative_to(ROOT)),
                    },
                },
                "data": {path.name: text},
            }
        )
    return out
