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
from collections.abc import Sequence
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
NATS_IMAGE = "nats:2.10.20-alpine3.20"
# The Dockerfile's user; the Collector image's; postgres:*-alpine's `postgres`.
APP_UID = 10001
POSTGRES_UID = 70
# The nats image runs as root by default; nats-server needs no privilege and
# writes only its JetStream store (the volume, group-owned through fsGroup).
NATS_UID = 1000


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


def resources(cpu: str, memory: str, *, limits: tuple[str, str]) -> Obj:
    """A container's requests (``cpu``, ``memory``) and ``limits`` (cpu, memory)."""
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": limits[0], "memory": limits[1]},
    }


# benchmarks/stack_memory.py: every service 69-71 MiB PSS at rest. The request
# is about twice that (a full pool, buffers under load); the limit twice again. One
# uvicorn worker does its work on one Python thread (the span exporter's is
# light), so a limit of 1 CPU hardly ever throttles it. 250m requested: the
# e2e benchmark (benchmarks/e2e_orders.py) keeps two cores busy with five
# services and PostgreSQL at ~50 orders/s, about 0.3-0.4 core per service.
SERVICE_RESOURCES = resources("250m", "128Mi", limits=("1", "256Mi"))
# The migrations init container: one connection, a few SQL files.
MIGRATE_RESOURCES = resources("50m", "64Mi", limits=("500m", "128Mi"))
# stack_memory.py: PostgreSQL with four databases, 56 MiB PSS at rest; its
# shared_buffers (128 MiB by default) fill as the data is read.
POSTGRES_RESOURCES = resources("100m", "192Mi", limits=("1", "512Mi"))
# The Collector (stack_memory.py: 64 MiB at rest) refuses data at its
# memory_limiter before the kernel kills it: OTELCOL_MEMORY_LIMIT_MIB is 80 %
# of the container's limit (spike 20 %).
AGENT_MEMORY_LIMIT_MIB = 256
GATEWAY_MEMORY_LIMIT_MIB = 512
# nats-server: 13 MiB resident at rest (its /varz `mem`); JetStream's file store
# caches message blocks as it reads them. GOMEMLIMIT keeps the Go heap under
# the limit (80 %), as the NATS Helm chart does.
NATS_MEMORY_LIMIT_MIB = 512
NATS_RESOURCES = resources("100m", "128Mi", limits=("1", f"{NATS_MEMORY_LIMIT_MIB}Mi"))
# The exporter and the mail sink: one Python process each, 25 and 29 MiB resident at rest.
SMALL_PYTHON_RESOURCES = resources("20m", "48Mi", limits=("250m", "128Mi"))
# Jaeger: 60 MiB at rest (stack_memory.py), plus up to 50,000 traces in memory.
JAEGER_RESOURCES = resources("100m", "256Mi", limits=("1", "1Gi"))


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


def service_account(name: str, component: str) -> Obj:
    """Every workload runs as its own account, with no API token mounted."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(name, component),
        "automountServiceAccountToken": False,
    }


def container_ports(ports: Sequence[tuple[str, int]]) -> list[Obj]:
    return [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports]


def cluster_service(
    name: str, component: str, ports: Sequence[tuple[str, int]], **spec: Any
) -> Obj:
    """A Service for ``name``'s pods, each port targeting the container port of its name."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, component),
        "spec": {
            "selector": selector(name),
            **spec,
            "ports": [{"name": n, "port": p, "targetPort": n, "protocol": "TCP"} for n, p in ports],
        },
    }


def pod_template(
    name: str,
    component: str,
    uid: int,
    containers: list[Obj],
    volumes: list[Obj],
    *,
    grace_seconds: int | None = None,
) -> Obj:
    """A pod of its own account (no token), under the pod half of the `restricted` profile."""
    spec: Obj = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(uid),
    }
    if grace_seconds is not None:
        spec["terminationGracePeriodSeconds"] = grace_seconds
    spec["containers"] = containers
    spec["volumes"] = volumes
    return {"metadata": {"labels": labels(name, component)}, "spec": spec}


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


def http_probes(live: str, ready: str, port: str, *, startup_failures: int = 30) -> Obj:
    """Startup (every 2 s), liveness (every 10 s, 3 misses) and readiness (every 5 s, 2 misses)."""
    return {
        "startupProbe": http_probe(live, port, period=2, failures=startup_failures),
        "livenessProbe": http_probe(live, port, period=10, failures=3),
        "readinessProbe": http_probe(ready, port, period=5, failures=2),
    }


def data_claim(size: str) -> Obj:
    """A StatefulSet's volume claim ``data`` (overlays resize it)."""
    return {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
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


NATS = "nats"
NATS_PORTS = (("client", 4222), ("monitor", 8222), ("metrics", 7777))
NATS_URL = f"nats://{NATS}:4222"
# The SMTP server notifications sends to: the mail sink compose also runs
# (redline/mail_sink.py, mail kept in the pod). A real relay needs SMTP auth
# and TLS, which the notifications service does not speak yet.
MAIL_SINK = "mail-sink"
MAIL_SINK_PORT = 2525
MAIL_SERVICES = ("notifications",)

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
    if info.uses_nats:
        env["REDLINE_NATS_SERVERS"] = NATS_URL
    if info.name in MAIL_SERVICES:
        env["REDLINE_SMTP_HOST"] = MAIL_SINK
        env["REDLINE_SMTP_PORT"] = str(MAIL_SINK_PORT)
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
        **http_probes("/health/live", "/health/ready", "http"),
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
    template = pod_template(
        name,
        "service",
        APP_UID,
        [container],
        [volume],
        grace_seconds=SHUTDOWN.grace_period_seconds,
    )
    if init:
        template["spec"]["initContainers"] = init
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
            "template": template,
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
    account = service_account(name, "service")
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
        "ports": container_ports([("postgres", 5432)]),
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
            "template": pod_template(
                name,
                "database",
                POSTGRES_UID,
                [container],
                [volume, {"name": "run", "emptyDir": {}}],
                # The preStop's fast shutdown (at most 50 s) and then some.
                grace_seconds=60,
            ),
            "volumeClaimTemplates": [data_claim("1Gi")],
        },
    }
    service = cluster_service(name, "database", [("postgres", 5432)])
    account = service_account(name, "database")
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


# -------------------------------------------------------------------- events
def nats_objects() -> list[Obj]:
    """NATS with JetStream, as compose runs it, and its exporter beside it.

    A StatefulSet of one: JetStream's file store on its own volume outlives the
    pod, so events the outboxes published and notifications has not yet
    consumed survive a restart. Probes on the server's own health endpoint:
    startup and readiness on the full ``/healthz`` (200 once JetStream has
    recovered its streams), liveness on ``?js-enabled-only=true`` (a server busy
    recovering is alive, not to be restarted). The exporter
    (redline/nats_exporter.py, from the Redline image) reads ``/varz`` and
    ``/jsz`` over the pod's loopback; Prometheus scrapes it as job ``nats``.
    Reachable: the client port from the services that publish or consume
    (``uses_nats`` in services/topology.py), the metrics port from Prometheus;
    the monitoring port from nobody outside the pod.
    """
    name = NATS
    volume, mount = tmp_volume()
    server: Obj = {
        "name": "nats",
        "image": NATS_IMAGE,
        # The image's entrypoint prepends nats-server to arguments that start with "-".
        "args": [
            *("--jetstream", "--store_dir", "/data"),
            *("--http_port", "8222", "--server_name", "redline"),
        ],
        "ports": container_ports(NATS_PORTS[:2]),
        "env": [{"name": "GOMEMLIMIT", "value": f"{NATS_MEMORY_LIMIT_MIB * 8 // 10}MiB"}],
        "resources": NATS_RESOURCES,
        "startupProbe": http_probe("/healthz", "monitor", period=2, failures=30),
        "livenessProbe": http_probe(
            "/healthz?js-enabled-only=true", "monitor", period=10, failures=3
        ),
        "readinessProbe": http_probe("/healthz", "monitor", period=5, failures=2),
        "securityContext": restricted_security_context(NATS_UID),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, mount],
    }
    exporter: Obj = {
        "name": "exporter",
        "image": IMAGE,
        "command": [
            *("python", "-m", "redline.nats_exporter", "--monitor", "http://127.0.0.1:8222"),
            *("--host", "0.0.0.0", "--port", "7777"),
        ],
        "ports": container_ports(NATS_PORTS[2:]),
        "resources": SMALL_PYTHON_RESOURCES,
        # /metrics answers with nats_up 0 while NATS does not: the exporter is
        # healthy whenever it answers (its NATS budget is 1 s, under the timeout).
        **http_probes("/metrics", "/metrics", "metrics"),
        "securityContext": restricted_security_context(APP_UID),
        "volumeMounts": [mount],
    }
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta(name, "events"),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": selector(name)},
            "template": pod_template(
                name,
                "events",
                NATS_UID,
                [server, exporter],
                [volume],
                # SIGTERM: nats-server closes its clients and flushes the file
                # store, in seconds; the clients reconnect and the outboxes wait.
                grace_seconds=30,
            ),
            "volumeClaimTemplates": [data_claim("1Gi")],
        },
    }
    users = [from_pods(s.name) for s in SERVICES.values() if s.uses_nats]
    policy = network_policy(
        name,
        "events",
        [
            {"from": users, "ports": [{"port": "client", "protocol": "TCP"}]},
            {"from": [FROM_MONITORING], "ports": [{"port": "metrics", "protocol": "TCP"}]},
        ],
    )
    return [
        service_account(name, "events"),
        statefulset,
        cluster_service(name, "events", [NATS_PORTS[0], NATS_PORTS[2]]),
        policy,
        service_monitor(name, "metrics", selector=selector(name)),
    ]


def mail_sink_objects() -> list[Obj]:
    """The SMTP server notifications mails to (redline/mail_sink.py), from notifications only."""
    name = MAIL_SINK
    volume, mount = tmp_volume()
    smtp = [("smtp", MAIL_SINK_PORT)]
    tcp = {"tcpSocket": {"port": "smtp"}, "timeoutSeconds": 2}
    container: Obj = {
        "name": "mail-sink",
        "image": IMAGE,
        "command": [
            *("python", "-m", "redline.mail_sink", "--host", "0.0.0.0"),
            *("--port", str(MAIL_SINK_PORT), "--maildir", "/tmp/mail"),  # noqa: S108
        ],
        "ports": container_ports(smtp),
        "resources": SMALL_PYTHON_RESOURCES,
        "startupProbe": {**tcp, "periodSeconds": 2, "failureThreshold": 30},
        "livenessProbe": {**tcp, "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {**tcp, "periodSeconds": 5, "failureThreshold": 2},
        "securityContext": restricted_security_context(APP_UID),
        "volumeMounts": [mount],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, "events"),
        "spec": {
            # The mail is in the pod: one replica, replaced at once.
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(name)},
            "template": pod_template(name, "events", APP_UID, [container], [volume]),
        },
    }
    senders = [from_pods(s) for s in MAIL_SERVICES]
    return [
        service_account(name, "events"),
        deployment,
        cluster_service(name, "events", smtp),
        network_policy(
            name, "events", [{"from": senders, "ports": [{"port": "smtp", "protocol": "TCP"}]}]
        ),
    ]


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
    container: Obj = {
        "name": "otelcol",
        "image": COLLECTOR_IMAGE,
        "args": ["--config=/etc/otelcol-redline/config.yaml"],
        "ports": container_ports(COLLECTOR_PORTS),
        "env": collector_env(role, memory_limit_mib),
        "resources": resources(
            "100m", f"{memory_limit_mib // 2}Mi", limits=("1", f"{memory_limit_mib}Mi")
        ),
        **http_probes("/", "/", "health"),
        "securityContext": restricted_security_context(APP_UID),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/otelcol-redline", "readOnly": True},
            mount,
        ],
    }
    return pod_template(
        name,
        "telemetry",
        APP_UID,
        [container],
        [{"name": "config", "configMap": {"name": "otelcol-config"}}, volume],
        grace_seconds=30,
    )


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
    out: list[Obj] = [service_account(name, "telemetry") for name in (agent, gateway)]
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
        out.append(cluster_service(name, "telemetry", COLLECTOR_PORTS, **extra))
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
        "ports": container_ports(JAEGER_PORTS),
        "env": [
            # Jaeger's Monitor tab reads the span metrics from Prometheus.
            {"name": "JAEGER_PROMETHEUS_URL", "value": PROMETHEUS_URL},
            {"name": "JAEGER_MAX_TRACES", "value": "50000"},
        ],
        "resources": JAEGER_RESOURCES,
        **http_probes("/status", "/status", "health"),
        "securityContext": restricted_security_context(APP_UID),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/jaeger", "readOnly": True},
            mount,
        ],
    }
    return [
        service_account(name, "telemetry"),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(name, "telemetry"),
            "spec": {
                # The memory store is per process: one replica, replaced at once.
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector(name)},
                "template": pod_template(
                    name,
                    "telemetry",
                    APP_UID,
                    [container],
                    [{"name": "config", "configMap": {"name": "jaeger-config"}}, volume],
                ),
            },
        },
        cluster_service(name, "telemetry", JAEGER_PORTS),
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
