"""The native stack: what `redline up` runs, in which order, with which config.

Start order: PostgreSQL (embedded unless DATABASE_URL), the alert sink,
Jaeger and the OpenTelemetry Collector (built from pinned Go modules by
redline/binaries.py, when Go is there), the five services (each after the ones
it calls), Alertmanager, Prometheus, and Grafana when `grafana-server` is on
PATH. Stop order is the reverse. The state file (``<state>/stack.json``) says what runs where, for
`redline status`, `redline down`, chaos experiments and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from alerts.alertmanager import config_for as alertmanager_config
from alerts.paths import rule_files
from alerts.slo import COMPRESSED, NORMAL
from redline import nats_server as nats
from redline.alert_sink import AlertSink
from redline.binaries import PROGRAMS, BuildError, binary_path, build
from redline.mail_sink import MailSink
from redline.state import read_state, state_file, write_state
from redline.supervisor import Component, StartupError, Supervisor
from services.topology import REPLICA_PORT_STEP, SERVICES, start_waves

if TYPE_CHECKING:
    # services.chassis and telemetry are imported where used: they bring
    # Litestar, seconds that `redline status`, `logs` or `top` should not wait for.
    from services.chassis.pgserver import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = ROOT / ".redline"

DEFAULT_PORTS: dict[str, int] = {
    **{name: info.port for name, info in SERVICES.items()},
    # The services' ops listeners (/admin), always on loopback.
    **{info.ops_name: info.ops_port for info in SERVICES.values()},
    "postgres": 54329,
    "prometheus": 9090,
    "alertmanager": 9093,
    "alert-sink": 9095,
    # Events (issue 16): NATS with JetStream, its monitoring port, the SMTP sink.
    "nats": 4222,
    "nats-monitor": 8222,
    # NATS's monitoring JSON as Prometheus metrics (redline/nats_exporter.py).
    "nats-exporter": 7777,
    "mail-sink": 2525,
    # The OpenTelemetry Collector: OTLP in, its own metrics, span metrics, health.
    "collector": 4318,
    "collector-grpc": 4317,
    "collector-metrics": 8888,
    "collector-spanmetrics": 8889,
    "collector-health": 13133,
    # Jaeger: the query API (and UI, where its assets exist), OTLP in from the
    # Collector, its own metrics, health.
    "jaeger": 16686,
    "jaeger-grpc": 16685,
    "jaeger-otlp": 14317,
    "jaeger-metrics": 14269,
    "jaeger-health": 13134,
    "grafana": 3000,
}

# Optional backends: started when their binary is on PATH, else listed with a hint.
OPTIONAL = {
    "grafana": ("grafana-server", "dashboards; https://grafana.com/grafana/download"),
}
PIPELINE_PORTS = [p for p in DEFAULT_PORTS if p.startswith(("collector", "jaeger"))]
COLLECTOR_CONFIG = ROOT / "telemetry" / "collector" / "otelcol.yaml"
JAEGER_CONFIG = ROOT / "telemetry" / "jaeger" / "jaeger.yaml"


# The ops listeners never leave this machine, whatever --host says.
OPS_HOST = "127.0.0.1"
# The gateway of this development stack: load tests and experiments on this
# machine keep their trace ids, and sign up their users from one address.
LOCAL_GATEWAY = {
    "REDLINE_TRACE_TRUSTED_CLIENTS": "127.0.0.0/8,::1",
    "REDLINE_CREDENTIAL_NETWORK_PER_MINUTE": "60000",
    "REDLINE_CREDENTIAL_NETWORK_BURST": "1000",
}


# A service with replicas drains on SIGTERM (readiness 503, `Connection: close`
# on every answer) for longer than its callers keep an idle connection (4 s),
# so none is left when its listener closes: a rolling restart or a scale-down
# costs its callers no request (services/chassis/server.py). One instance has
# nobody to fail over to, so it keeps the default (no drain: a quick stop).
REPLICA_DRAIN = {"REDLINE_DRAIN_SECONDS": "4.5"}


class StackError(RuntimeError):
    """A problem the user can fix, reported as one line."""


@dataclass
class StackOptions:
    state_dir: Path = DEFAULT_STATE_DIR
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    database_url: str | None = None
    # Alert rules: "normal" (production windows) or "compressed" (minutes, for demos/tests).
    rules_profile: str = "normal"
    # Send spans here instead of the local Collector (tests point it at their
    # receiver); then neither the Collector nor Jaeger runs.
    otlp_endpoint: str | None = None
    # Jaeger keeps this share of the traces no policy keeps for a reason
    # (errors, slow, cancelled orders, exemplars): telemetry/jaeger/jaeger.yaml.
    trace_sample_percent: float = 10.0
    scrape_interval: str = "2s"
    restart: bool = True
    admin_token: str | None = None
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    with_prometheus: bool = True
    # Send Alertmanager's notifications here instead of the built-in sink.
    alert_webhook: str | None = None
    # More scrape jobs, {job: "host:port"} (e.g. a Locust exporter).
    extra_scrape: dict[str, str] = field(default_factory=dict)
    # Instances per service ({"inventory": 2}); one unless named. Replica k is
    # the component ``<service>-k`` on its own port (``--port inventory-2=...``,
    # default the service's port + 10 * (k - 1)) and ops port.
    replicas: dict[str, int] = field(default_factory=dict)

    def instances(self, service: str) -> list[str]:
        return SERVICES[service].instance_names(self.replicas.get(service, 1))


def with_replica_ports(ports: dict[str, int], replicas: dict[str, int]) -> dict[str, int]:
    """``ports`` plus a port and an ops port for every replica that has none yet."""
    out = dict(ports)
    for service, count in replicas.items():
        for k, instance in enumerate(SERVICES[service].instance_names(count)[1:], start=2):
            out.setdefault(instance, out[service] + REPLICA_PORT_STEP * (k - 1))
            out.setdefault(f"{instance}-ops", out[f"{service}-ops"] + REPLICA_PORT_STEP * (k - 1))
    return out


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def exclusive(state_dir: Path) -> Iterator[None]:
    """Held for as long as a stack runs from ``state_dir``: a second `up` fails fast."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = (state_dir / "up.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        state = read_state(state_dir) or {}
        pid = state.get("pid", "?")
        lock.close()
        raise StackError(
            f"a stack is already running from {state_dir} (pid {pid}); "
            "see `redline status`, stop it with `redline down`"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


class Stack:
    def __init__(self, options: StackOptions, supervisor: Supervisor) -> None:
        options.ports = with_replica_ports(options.ports, options.replicas)
        self.o = options
        self.sup = supervisor
        self.pg: EmbeddedPostgres | None = None
        self.sink: AlertSink | None = None
        self.mail: MailSink | None = None
        self.rows: list[tuple[str, str, str]] = []
        self.skipped: list[tuple[str, str]] = []
        self.admin_token = options.admin_token or secrets.token_urlsafe(24)
        self.stop_requested = threading.Event()
        self.started_at = time.time()

    # -- helpers -------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://{self.o.host}:{self.o.ports[name]}"

    def _check_ports(self, names: list[str]) -> None:
        for name in names:
            port = self.o.ports[name]
            if not port_free(self.o.host, port):
                raise StackError(
                    f"port {port} ({name}) is already in use; "
                    f"choose another with --port {name}=PORT"
                )

    def _write_state(self, status: str) -> None:
        components = {}
        for comp in self.sup.components:
            components[comp.name] = {
                "pid": comp.proc.pid if comp.proc else None,
                "url": comp.url,
                "role": comp.role,
                "ready_url": comp.ready_url,
                "restarts": comp.restarts,
                # Wall-clock start of the current process, for `redline status`'s uptime.
                "started_at": time.time() - (time.monotonic() - comp.started_at)
                if comp.proc
                else None,
            }
        if self.pg is not None:
            components["postgres"] = {
                "pid": self.pg.pid(),
                "url": f"postgresql://postgres@{self.o.host}:{self.pg.port}",
                "role": "database (embedded)",
                "data_dir": str(self.pg.data_dir),
            }
        state = {
            "status": status,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "state_dir": str(self.o.state_dir),
            "host": self.o.host,
            "ports": self.o.ports,
            "admin_token": self.admin_token,
            "rules_profile": self.o.rules_profile,
            # Whether the supervisor restarts what exits (`redline restart` relies on it).
            "restart": self.o.restart,
            # Each service's instances, in order (component names).
            "instances": {name: self.o.instances(name) for name in SERVICES},
            "components": components,
            "skipped": [{"name": n, "hint": h} for n, h in self.skipped],
            "table": [list(r) for r in self.rows],
        }
        write_state(self.o.state_dir, state)

    # -- start ---------------------------------------------------------------------
    def start(self) -> None:
        o = self.o
        o.state_dir.mkdir(parents=True, exist_ok=True)
        found = {n: shutil.which(binary) for n, (binary, _) in OPTIONAL.items()}
        pipeline = None if o.otlp_endpoint else self._pipeline_binaries()
        instances = [i for name in SERVICES for i in o.instances(name)]
        wanted = [
            *instances,
            *(f"{i}-ops" for i in instances),
            "alert-sink",
            "mail-sink",
        ]
        if nats.binary():
            wanted += ["nats", "nats-monitor", "nats-exporter"]
        if o.with_prometheus:
            wanted += ["prometheus", "alertmanager"]
        if pipeline:
            wanted += PIPELINE_PORTS
        if found["grafana"]:
            wanted.append("grafana")
        if not o.database_url:
            from services.chassis.pgserver import EmbeddedPostgres

            self.pg = EmbeddedPostgres(
                o.state_dir / "pgdata", port=o.ports["postgres"], host=o.host
            )
            if not self.pg.running():  # a server left by an earlier run is reused
                wanted.append("postgres")
        self._check_ports(wanted)
        self._write_state("starting")

        base = self._start_postgres()
        self.sink = AlertSink(
            o.host, o.ports["alert-sink"], lambda t: self.sup.say(t, source="alerts")
        )
        self.sink.start()
        self._start_events()
        otlp = o.otlp_endpoint
        if pipeline:
            self._start_jaeger(pipeline["jaeger"])
            otlp = self._start_collector(pipeline["otelcol"])
        for name, (binary, hint) in OPTIONAL.items():
            if not found[name]:
                self.skipped.append((name, f"`{binary}` not on PATH: {hint}"))
        if not otlp:
            self.skipped.append(
                (
                    "traces",
                    "no OTLP endpoint: spans are not exported (exemplars still carry trace ids)",
                )
            )
        self._start_services(base, otlp)
        if o.with_prometheus:
            self._start_alertmanager()
            self._start_prometheus()
        if found["grafana"]:
            self._start_grafana(found["grafana"] or "grafana-server")
        self._write_state("ready")

    def _pipeline_binaries(self) -> dict[str, Path] | None:
        """The Collector's and Jaeger's binaries, built now if need be; None to run without."""
        paths: dict[str, Path] = {}
        for name in PROGRAMS:
            try:
                paths[name] = binary_path(name) or build(name, say=self.sup.say)
            except BuildError as exc:
                self.skipped.append(("collector, jaeger", str(exc)))
                return None
        return paths

    def _start_postgres(self) -> str:
        if self.pg is None:
            assert self.o.database_url
            return self.o.database_url.rsplit("/", 1)[0]
        from services.chassis.pgserver import EmbeddedPostgresError

        self.sup.say(f"PostgreSQL: data in {self.pg.data_dir}")
        try:
            self.pg.ensure_running()
        except EmbeddedPostgresError as exc:
            raise StackError(f"PostgreSQL did not start: {exc} (log: {self.pg.log_file})") from None
        base = self.pg.dsn().rsplit("/", 1)[0]
        self.rows.append(
            ("postgres", f"postgresql://postgres@{self.o.host}:{self.pg.port}", "database")
        )
        return base

    def _start_events(self) -> None:
        """NATS (when installed) and the SMTP sink notifications mail to."""
        o = self.o
        self.mail = MailSink(
            o.host,
            o.ports["mail-sink"],
            o.state_dir / "mail",
            lambda t: self.sup.say(t, source="mail"),
        ).start()
        self.rows.append(
            (
                "mail-sink",
                f"smtp://{o.host}:{o.ports['mail-sink']}",
                f"mail in {o.state_dir / 'mail'}",
            )
        )
        comp = nats.component(
            host=o.host,
            port=o.ports["nats"],
            monitor_port=o.ports["nats-monitor"],
            state_dir=o.state_dir,
            restart=o.restart,
        )
        if comp is None:
            self.skipped.append(("nats", nats.MISSING_HINT))
            return
        self.sup.start(comp)
        self.rows.append(("nats", comp.url or "", comp.role))
        exporter = nats.exporter_component(
            host=o.host,
            port=o.ports["nats-exporter"],
            monitor_port=o.ports["nats-monitor"],
            restart=o.restart,
        )
        self.sup.start(exporter)
        self.rows.append(("nats-exporter", exporter.url or "", exporter.role))
        self._write_state("starting")

    def _start_services(self, base_dsn: str, otlp: str | None) -> None:
        from services.chassis.app import database_name
        from services.chassis.db import ensure_database

        o = self.o
        # Dependents get every instance: the resilient client balances over them.
        urls = {
            SERVICES[n].url_variable: ",".join(self.url(i) for i in o.instances(n))
            for n in SERVICES
        }
        otel = (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
                "OTEL_BSP_SCHEDULE_DELAY": "1000",
            }
            if otlp
            else {"OTEL_TRACES_EXPORTER": "none"}
        )
        if otlp and not o.otlp_endpoint:
            # The local Collector answers in milliseconds: give up on a wedged
            # one after 2 s (seconds, in the Python SDK), not the default 10,
            # so an export thread is not stuck and failures show at once.
            otel["OTEL_EXPORTER_OTLP_TIMEOUT"] = "2"
        # A wave's services start side by side once the services they call are ready.
        for k, wave in enumerate(start_waves()):
            comps: list[Component] = []
            for name in wave:
                info = SERVICES[name]
                if info.has_database:
                    asyncio.run(ensure_database(f"{base_dsn}/postgres", database_name(name)))
                for instance in o.instances(name):
                    env = {
                        **urls,
                        **otel,
                        "REDLINE_HOST": o.host,
                        "REDLINE_PORT": str(o.ports[instance]),
                        "REDLINE_OPS_HOST": OPS_HOST,
                        "REDLINE_OPS_PORT": str(o.ports[f"{instance}-ops"]),
                        "REDLINE_ADMIN_TOKEN": self.admin_token,
                        "REDLINE_ENVIRONMENT": os.environ.get("REDLINE_ENVIRONMENT", "dev"),
                        "REDLINE_NATS_SERVERS": f"nats://{o.host}:{o.ports['nats']}",
                        "REDLINE_SMTP_HOST": o.host,
                        "REDLINE_SMTP_PORT": str(o.ports["mail-sink"]),
                        **(LOCAL_GATEWAY if name == "gateway" else {}),
                        **(REPLICA_DRAIN if len(o.instances(name)) > 1 else {}),
                        **o.service_env.get(name, {}),
                    }
                    if info.has_database:
                        # Replicas share their service's database, as in a Deployment.
                        env["DATABASE_URL"] = f"{base_dsn}/{database_name(name)}"
                    comps.append(
                        Component(
                            name=instance,
                            argv=[sys.executable, "-m", f"services.{name}"],
                            env=env,
                            ready_url=f"{self.url(instance)}/health/ready",
                            url=self.url(instance) + ("/api/v1" if name == "gateway" else ""),
                            role=info.summary,
                            cwd=str(ROOT),
                            restart=o.restart,
                            group=f"services-{k}",
                        )
                    )
            self.sup.start_together(comps)
            for comp in comps:
                self.rows.append((comp.name, comp.url or "", comp.role))
            self._write_state("starting")

    def _start_alertmanager(self) -> None:
        from telemetry.prometheus.config import alertmanager_command_line

        o = self.o
        assert self.sink is not None
        config = o.state_dir / "alertmanager.yml"
        # Short waits: a developer watching a demo should not wait 30 s for a page.
        # Under the compressed rules (an hour in a minute), Alertmanager's waits
        # shrink with them: production's 10 s group wait for a page and 5 min
        # between a group's notifications become 1 s (one evaluation) and 5 s, so
        # an alert that fires or resolves is told within the compressed windows.
        webhook = o.alert_webhook or self.sink.url
        wait, interval = ("1s", "5s") if o.rules_profile == "compressed" else ("5s", "10s")
        config.write_text(alertmanager_config(webhook, group_wait=wait, group_interval=interval))
        data = o.state_dir / "alertmanager-data"
        data.mkdir(exist_ok=True)
        listen = f"{o.host}:{o.ports['alertmanager']}"
        self.sup.start(
            Component(
                name="alertmanager",
                argv=alertmanager_command_line(config, data, listen),
                ready_url=f"{self.url('alertmanager')}/-/ready",
                url=self.url("alertmanager"),
                role="alerts: routing, grouping, inhibition",
                restart=o.restart,
            )
        )
        self.rows.append(
            ("alertmanager", self.url("alertmanager"), "alerts (API only: `redline alerts`)")
        )

    def _start_prometheus(self) -> None:
        from telemetry.prometheus.config import command_line, native_config

        o = self.o
        profile = COMPRESSED if o.rules_profile == "compressed" else NORMAL
        # One job per service, one target per instance (its own `instance` label).
        targets = {name: [f"{o.host}:{o.ports[i]}" for i in o.instances(name)] for name in SERVICES}
        config = o.state_dir / "prometheus.yml"
        config.write_text(
            native_config(
                targets,
                rule_files=[str(p) for p in rule_files(profile)],
                alertmanager_url=self.url("alertmanager"),
                scrape_interval=o.scrape_interval,
                evaluation_interval=o.scrape_interval,
                self_address=f"{o.host}:{o.ports['prometheus']}",
                extra_targets={**self._pipeline_jobs(), **self._nats_job(), **o.extra_scrape}
                or None,
            )
        )
        data = o.state_dir / "prometheus-data"
        data.mkdir(exist_ok=True)
        self.sup.start(
            Component(
                name="prometheus",
                argv=command_line(config, data, f"{o.host}:{o.ports['prometheus']}"),
                ready_url=f"{self.url('prometheus')}/-/ready",
                url=self.url("prometheus"),
                role="metrics, exemplars, alert rules",
                restart=o.restart,
            )
        )
        self.rows.append(
            (
                "prometheus",
                self.url("prometheus") + "/classic/graph",
                "metrics, alert rules (classic UI)",
            )
        )

    def _start_jaeger(self, binary: Path) -> None:
        """Jaeger v2: tail sampling, in-memory traces, the query API; SPM from Prometheus."""
        o = self.o
        env = {
            "JAEGER_LISTEN_HOST": o.host,
            "JAEGER_QUERY_HTTP_PORT": str(o.ports["jaeger"]),
            "JAEGER_QUERY_GRPC_PORT": str(o.ports["jaeger-grpc"]),
            "JAEGER_OTLP_GRPC_PORT": str(o.ports["jaeger-otlp"]),
            "JAEGER_METRICS_PORT": str(o.ports["jaeger-metrics"]),
            "JAEGER_HEALTH_PORT": str(o.ports["jaeger-health"]),
            "JAEGER_PROMETHEUS_URL": self.url("prometheus"),
            "JAEGER_SAMPLE_PERCENT": f"{o.trace_sample_percent:g}",
            "JAEGER_TAIL_DECISION_WAIT": "3s",
        }
        self.sup.start(
            Component(
                name="jaeger",
                argv=[str(binary), "--config", str(JAEGER_CONFIG)],
                env=env,
                ready_url=f"{self.url('jaeger-health')}/status",
                url=self.url("jaeger"),
                role="traces: tail sampling, storage, query API",
                restart=o.restart,
            )
        )
        self.rows.append(
            ("jaeger", f"{self.url('jaeger')}/api/services", "traces (Jaeger query API; no UI)")
        )

    def _start_collector(self, binary: Path) -> str:
        """The OpenTelemetry Collector in front of Jaeger; returns its OTLP/HTTP endpoint."""
        o = self.o
        logs = log_dir(o.state_dir)
        env = {
            "OTELCOL_LISTEN_HOST": o.host,
            "OTELCOL_OTLP_HTTP_PORT": str(o.ports["collector"]),
            "OTELCOL_OTLP_GRPC_PORT": str(o.ports["collector-grpc"]),
            "OTELCOL_METRICS_PORT": str(o.ports["collector-metrics"]),
            "OTELCOL_SPANMETRICS_PORT": str(o.ports["collector-spanmetrics"]),
            "OTELCOL_HEALTH_PORT": str(o.ports["collector-health"]),
            "OTELCOL_TRACES_ENDPOINT": f"{o.host}:{o.ports['jaeger-otlp']}",
            "OTELCOL_LOG_FILES": str(logs / "*.log"),
            "OTELCOL_MEMORY_LIMIT_MIB": "200",
            "OTELCOL_MEMORY_SPIKE_MIB": "50",
            "OTELCOL_LOG_LEVEL": "warn",
        }
        # No Loki natively: the lines are read, parsed and trace-linked, then
        # sent to an OTLP log store if one is named, else counted and dropped.
        logs_endpoint = os.environ.get("REDLINE_LOGS_OTLP_ENDPOINT")
        if logs_endpoint:
            env["OTELCOL_LOGS_ENDPOINT"] = logs_endpoint
        else:
            env["OTELCOL_LOGS_EXPORTER"] = "debug/logs"
        self.sup.start(
            Component(
                name="collector",
                argv=[str(binary), "--config", str(COLLECTOR_CONFIG)],
                env=env,
                ready_url=f"{self.url('collector-health')}/",
                url=self.url("collector"),
                role="OpenTelemetry Collector",
                restart=o.restart,
            )
        )
        self.rows.append(
            ("collector", self.url("collector"), "OTLP in; span metrics; logs from files")
        )
        return self.url("collector")

    def _nats_job(self) -> dict[str, str]:
        """The NATS exporter's job, when NATS runs (compose's job name)."""
        if not any(c.name == "nats-exporter" for c in self.sup.components):
            return {}
        return {nats.PROMETHEUS_JOB: f"{self.o.host}:{self.o.ports['nats-exporter']}"}

    def _pipeline_jobs(self) -> dict[str, str]:
        """Prometheus jobs for the Collector and Jaeger, when they run (compose's job names)."""
        if not any(c.name == "collector" for c in self.sup.components):
            return {}
        host = self.o.host
        return {
            "otel-collector": f"{host}:{self.o.ports['collector-metrics']}",
            "spanmetrics": f"{host}:{self.o.ports['collector-spanmetrics']}",
            "jaeger": f"{host}:{self.o.ports['jaeger-metrics']}",
        }

    def _start_grafana(self, binary: str) -> None:
        """Grafana with the project's dashboards and datasources pointed at this stack."""
        from telemetry.grafana import config as grafana

        o = self.o
        prov = o.state_dir / "grafana-provisioning"
        (prov / "datasources").mkdir(parents=True, exist_ok=True)
        (prov / "dashboards").mkdir(parents=True, exist_ok=True)
        values = {
            "PROMETHEUS_URL": self.url("prometheus"),
            "PROMETHEUS_SCRAPE_INTERVAL": o.scrape_interval,
            "JAEGER_URL": self.url("jaeger"),
            "ALERTMANAGER_URL": self.url("alertmanager"),
            "REDLINE_DASHBOARDS_DIR": str(ROOT / "dashboards" / "generated"),
        }
        (prov / "datasources" / "native.yml").write_text(
            grafana.render(grafana.DATASOURCES, values)
        )
        (prov / "dashboards" / "redline.yml").write_text(
            grafana.render(grafana.DASHBOARD_PROVIDERS, values)
        )
        data = o.state_dir / "grafana-data"
        data.mkdir(exist_ok=True)
        self.sup.start(
            Component(
                name="grafana",
                argv=[binary, "--homepath", os.environ.get("GRAFANA_HOME", "/usr/share/grafana")],
                env={
                    "GF_PATHS_PROVISIONING": str(prov),
                    "GF_PATHS_DATA": str(data),
                    "GF_SERVER_HTTP_ADDR": o.host,
                    "GF_SERVER_HTTP_PORT": str(o.ports["grafana"]),
                    "GF_AUTH_ANONYMOUS_ENABLED": "true",
                    "GF_AUTH_ANONYMOUS_ORG_ROLE": "Admin",
                },
                ready_url=f"{self.url('grafana')}/api/health",
                url=self.url("grafana"),
                role="dashboards",
                restart=o.restart,
            )
        )
        self.rows.append(("grafana", self.url("grafana"), "dashboards (Grafana)"))

    # -- run and stop --------------------------------------------------------------
    def supervise(self) -> None:
        while not self.stop_requested.wait(0.5):
            self.sup.tend(on_change=lambda: self._write_state("ready"))

    def stop(self) -> None:
        self.sup.say("stopping")
        self._write_state("stopping")
        self.sup.stop_all(lambda c, code: self.sup.say(f"stopped {c.name} (exit status {code})"))
        if self.sink is not None:
            self.sink.stop()
        if self.mail is not None:
            self.mail.stop()
        if self.pg is not None and self.pg.running():
            self.pg.stop()
            self.sup.say("stopped postgres")
        state_file(self.o.state_dir).unlink(missing_ok=True)

    def table(self) -> str:
        width = max(len(r[0]) for r in self.rows) if self.rows else 10
        uwidth = max(len(r[1]) for r in self.rows) if self.rows else 20
        lines = ["", "Redline is up:", ""]
        lines += [f"  {n:<{width}}  {u:<{uwidth}}  {w}" for n, u, w in self.rows]
        if self.skipped:
            lines += ["", "Not started:"]
            lines += [f"  {n:<{width}}  {h}" for n, h in self.skipped]
        lines += [
            "",
            f"Admin API: /admin on each service's ops port ({OPS_HOST}, "
            f"gateway {self.o.ports[SERVICES['gateway'].ops_name]}, ...); "
            f"its token is in {state_file(self.o.state_dir)}",
            "Stop with Ctrl-C (or `redline down` when detached).",
            "",
        ]
        return "\n".join(lines)


def log_dir(state_dir: Path) -> Path:
    """Where each component's output is kept, one ``<name>.log`` each (`redline logs`)."""
    return state_dir / "logs"


def run_foreground(options: StackOptions, *, json_logs: bool = False) -> int:
    """`redline up`: start everything, print the table, supervise until a signal.

    On a terminal the services' JSON lines are shown concise (``--json``: as
    written); the files under ``<state>/logs/`` always hold them as written.
    """
    from redline.console.logfmt import render

    tty = sys.stdout.isatty() and not json_logs
    sup = Supervisor(
        log_dir=log_dir(options.state_dir),
        render=(lambda line: render(line, colour=True)) if tty else None,
    )
    with exclusive(options.state_dir):
        stack = Stack(options, sup)

        def on_signal(signum: int, _: object) -> None:
            stack.stop_requested.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            stack.start()
            for line in stack.table().splitlines():
                sup.say(line)
            stack.supervise()
            return 0
        except StartupError as exc:
            sup.say(f"error: {exc}")
            return 1
        finally:
            stack.stop()  # a StackError propagates: the CLI prints it as one line
