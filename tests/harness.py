"""Helpers every test uses: free ports, waiting on conditions, service processes.

Tests start real processes on free loopback ports and wait on readiness,
never on fixed sleeps; every process started here is stopped here.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


# Ports handed out below the kernel's ephemeral range (32768-60999 on Linux):
# a port from bind(0) is free only until something binds it, and every
# outgoing connection on this machine draws its source port from that range,
# so with dozens of processes per stack a collision with a client socket
# became likely. Below it, only our own processes bind, and each port is
# handed out once per test session.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()
_port_rng = random.Random()


def free_port() -> int:
    for _ in range(1000):
        port = _port_rng.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float = 15.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll ``condition`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except (httpx.HTTPError, OSError, AssertionError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            suffix = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"{text} within {timeout}s{suffix}")
        time.sleep(interval)


def otel_env(otlp_endpoint: str | None) -> dict[str, str]:
    """Environment for a service exporting spans to the test's receiver, quickly."""
    if otlp_endpoint is None:
        return {"OTEL_TRACES_EXPORTER": "none"}
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def terminate(
    proc: subprocess.Popen[bytes] | None, timeout: float, after_kill: float | None = 5
) -> int | None:
    """SIGTERM, wait ``timeout``; then SIGKILL and raise. Returns the exit code."""
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=after_kill)
        raise


@dataclass
class ServiceProcess:
    """A service started as ``python -m services.<name>`` on a free port."""

    name: str
    env: Mapping[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    # The operators' listener (/admin): never the public port.
    ops_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    def start(self, *, wait_ready: bool = True, timeout: float = 30.0) -> ServiceProcess:
        env = {
            **os.environ,
            "REDLINE_HOST": "127.0.0.1",
            "REDLINE_PORT": str(self.port),
            "REDLINE_OPS_PORT": str(self.ops_port),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}"
                )
            return httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200

        wait_until(ready, timeout=timeout, message=lambda: f"{self.name} not ready\n{self.tail()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, SIGKILL as a last resort. Returns the exit code."""
        return terminate(self.proc, timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def log_lines(self) -> list[dict[str, Any]]:
        """Every stdout line, parsed as JSON; a line that is not JSON fails the test."""
        out = []
        for raw in self.log_path.read_text().splitlines():
            if not raw.strip():
                continue
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError as exc:
                raise AssertionError(f"{self.name} wrote a non-JSON log line: {raw!r}") from exc
        return out

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


def traceparent() -> tuple[str, str, str]:
    """A fresh sampled W3C traceparent and its trace and parent span ids."""
    trace_id = os.urandom(16).hex()
    span_id = os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


ADMIN_TOKEN = "test-admin-token"
ADMIN_HEADERS = {"authorization": f"Bearer {ADMIN_TOKEN}"}
# Argon2 at its cheapest: tests exercise the logic, not the hash's cost.
FAST_PASSWORD_HASHING = {"REDLINE_PASSWORD_TIME_COST": "1", "REDLINE_PASSWORD_MEMORY_KIB": "1024"}
# The tests' own traceparents are continued through the gateway, as a load
# generator's are; tests/test_edge_headers.py checks an untrusted edge.
TESTS_ARE_TRUSTED_CALLERS = {
    "REDLINE_TRACE_TRUSTED_CLIENTS": "127.0.0.1",
    # Every test signs up its users from this one address.
    "REDLINE_CREDENTIAL_NETWORK_PER_MINUTE": "60000",
    "REDLINE_CREDENTIAL_NETWORK_BURST": "1000",
}
# A card processor that answers at once and declines only the declining test cards.
PREDICTABLE_PAYMENTS = {
    "REDLINE_PROCESSOR_MEDIAN_LATENCY_MS": "5",
    "REDLINE_PROCESSOR_DECLINE_RATE": "0",
}
# `redline up`'s arguments for the same: no random declines of pm_card_visa
# (2 % for a reader), so a cancelled order means the platform cancelled it.
NO_RANDOM_DECLINES = ("--env", "payments:REDLINE_PROCESSOR_DECLINE_RATE=0")


@dataclass
class Platform:
    """All the services on free ports, each on its own fresh database."""

    services: dict[str, ServiceProcess]

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.services[name]

    @property
    def gateway(self) -> str:
        return self.services["gateway"].url

    @classmethod
    def build(
        cls,
        *,
        databases: Callable[[str], str],
        logs: Path,
        otlp_endpoint: str | None,
        extra_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Platform:
        from services.topology import SERVICES

        ports = {name: free_port() for name in SERVICES}
        nats_port = free_port()
        urls = {SERVICES[n].url_variable: f"http://127.0.0.1:{p}" for n, p in ports.items()}
        services = {}
        for name, info in SERVICES.items():
            env = {
                **urls,
                **otel_env(otlp_endpoint),
                **FAST_PASSWORD_HASHING,
                "REDLINE_ADMIN_TOKEN": ADMIN_TOKEN,
                # No NATS unless a test gives one: never a stack's on the default port.
                "REDLINE_NATS_SERVERS": f"nats://127.0.0.1:{nats_port}",
                **(TESTS_ARE_TRUSTED_CALLERS if name == "gateway" else {}),
                **((extra_env or {}).get(name, {})),
            }
            if info.has_database:
                env["DATABASE_URL"] = databases(name)
            services[name] = ServiceProcess(
                name, env=env, log_path=logs / f"{name}-{ports[name]}.log", port=ports[name]
            )
        return cls(services)

    def start(self) -> Platform:
        from services.topology import start_waves

        try:
            # As `redline up`: a wave side by side, once the services it calls are ready.
            for wave in start_waves():
                for name in wave:
                    self.services[name].start(wait_ready=False)
                for name in wave:
                    self.services[name].wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Wave by wave, the last started first; a wave's services side by side."""
        from services.topology import start_waves

        for wave in reversed(start_waves()):
            procs = [self.services[name].proc for name in wave]
            for proc in procs:
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                if proc is None:
                    continue
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


@dataclass(frozen=True)
class User:
    id: str
    email: str
    headers: dict[str, str]


def sign_up(
    gateway: str, *, email: str | None = None, password: str = "correct horse battery"
) -> User:
    """Register and log in through the gateway."""
    email = email or f"user-{os.urandom(5).hex()}@example.com"
    with httpx.Client(base_url=gateway, timeout=10) as c:
        r = c.post("/api/v1/users", json={"email": email, "password": password, "name": "Test"})
        assert r.status_code == 202, r.text
        t = c.post("/api/v1/auth/tokens", json={"email": email, "password": password})
        assert t.status_code == 200, t.text
    token = t.json()
    return User(token["user_id"], email, {"authorization": f"Bearer {token['access_token']}"})


STACK_COMPONENT_PORTS = (
    "gateway",
    "accounts",
    "inventory",
    "orders",
    "payments",
    "notifications",
    # Each service's ops listener (/admin), named as `redline up --port` names it.
    "gateway-ops",
    "accounts-ops",
    "inventory-ops",
    "orders-ops",
    "payments-ops",
    "notifications-ops",
    "postgres",
    "prometheus",
    "alertmanager",
    "alert-sink",
    # Events: NATS, its monitoring port and exporter, the SMTP sink.
    "nats",
    "nats-monitor",
    "nats-exporter",
    "mail-sink",
    # The Collector and Jaeger, when the stack runs them (no --otlp-endpoint).
    "collector",
    "collector-grpc",
    "collector-metrics",
    "collector-spanmetrics",
    "collector-health",
    "jaeger",
    "jaeger-grpc",
    "jaeger-otlp",
    "jaeger-metrics",
    "jaeger-health",
)


@dataclass
class Stack:
    """`redline up` in a subprocess, on free ports, with its own state directory."""

    state_dir: Path
    ports: dict[str, int]
    log_path: Path
    otlp_endpoint: str | None = None
    rules: str = "compressed"
    # More `redline up` arguments (--scrape, --alert-webhook, --env ...).
    extra: list[str] = field(default_factory=list)
    # More environment for `redline up` itself.
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def build(
        cls,
        base: Path,
        *,
        otlp_endpoint: str | None,
        rules: str = "compressed",
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        replicas: dict[str, int] | None = None,
    ) -> Stack:
        """``replicas``: `redline up --replicas`, each further instance on its own free ports."""
        ports = {name: free_port() for name in STACK_COMPONENT_PORTS}
        args = list(extra or [])
        if replicas:
            from services.topology import SERVICES

            args += ["--replicas", ",".join(f"{name}={n}" for name, n in replicas.items())]
            for name, n in replicas.items():
                for instance in SERVICES[name].instance_names(n)[1:]:
                    ports[instance] = free_port()
                    ports[f"{instance}-ops"] = free_port()
        return cls(base / "state", ports, base / "stack.log", otlp_endpoint, rules, args, env or {})

    def argv(self, *extra: str) -> list[str]:
        args = [
            sys.executable,
            "-m",
            "redline",
            "up",
            "--state-dir",
            str(self.state_dir),
            "--rules",
            self.rules,
            "--scrape-interval",
            "1s",
            *self.extra,
            *extra,
        ]
        for name, port in self.ports.items():
            args += ["--port", f"{name}={port}"]
        if self.otlp_endpoint:
            args += ["--otlp-endpoint", self.otlp_endpoint]
        return args

    def start(self, timeout: float = 120.0) -> Stack:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **FAST_PASSWORD_HASHING,
            "REDLINE_ADMIN_TOKEN": ADMIN_TOKEN,
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redline up exited with {self.proc.returncode}:\n{self.tail()}")
            state = self.state()
            return bool(state and state.get("status") == "ready")

        wait_until(
            ready, timeout=timeout, interval=0.2, message=lambda: f"stack not ready\n{self.tail()}"
        )
        return self

    def state(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.state_dir / "stack.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data

    def pids(self) -> dict[str, int]:
        state = self.state() or {}
        return {n: c["pid"] for n, c in state.get("components", {}).items() if c.get("pid")}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def gateway(self) -> str:
        return self.url("gateway")

    @property
    def prometheus(self) -> str:
        return self.url("prometheus")

    def stop(self, timeout: float = 90.0) -> int | None:
        return terminate(self.proc, timeout, after_kill=None)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def prom_query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """An instant query against a real Prometheus; the result vector."""
    r = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def prom_value(prometheus: str, expr: str) -> float | None:
    """The single value of a scalar-ish query, or None when it returns nothing."""
    result = prom_query(prometheus, expr)
    return float(result[0]["value"][1]) if result else None
