"""What the chaos tests add around a stack: the fault proxy process and a trace query API.

The experiments look traces up through Jaeger's query API (what `redline up`
runs when Jaeger is installed). Tests send spans to their own OTLP receiver
instead, so ``JaegerQueryApi`` answers ``GET /api/traces/<id>`` from it, in
Jaeger's JSON shape.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.harness import NO_RANDOM_DECLINES, ROOT, Stack, free_port, wait_until
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan


def _tag(key: str, value: Any) -> dict[str, Any]:
    kind = "bool" if isinstance(value, bool) else "int64" if isinstance(value, int) else "string"
    return {"key": key, "type": kind, "value": value if kind != "string" else str(value)}


def jaeger_trace(spans: list[ReceivedSpan]) -> dict[str, Any]:
    """Spans as Jaeger's query API returns one trace."""
    processes: dict[str, dict[str, Any]] = {}
    out = []
    for span in spans:
        pid = "p" + str(sorted({s.service_name for s in spans}).index(span.service_name) + 1)
        processes[pid] = {"serviceName": span.service_name, "tags": []}
        tags = [_tag(k, v) for k, v in span.attributes.items()]
        tags.append(_tag("span.kind", span.kind.lower()))
        if span.status_code == 2:
            tags += [_tag("error", True), _tag("otel.status_code", "ERROR")]
        out.append(
            {
                "traceID": span.trace_id,
                "spanID": span.span_id,
                "operationName": span.name,
                "references": [
                    {"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_span_id}
                ]
                if span.parent_span_id
                else [],
                "startTime": span.start_ns // 1000,
                "duration": (span.end_ns - span.start_ns) // 1000,
                "tags": tags,
                "logs": [
                    {
                        "timestamp": span.start_ns // 1000,
                        "fields": [_tag("event", name), *(_tag(k, v) for k, v in attrs.items())],
                    }
                    for name, attrs in span.events
                ],
                "processID": pid,
            }
        )
    return {"traceID": spans[0].trace_id, "spans": out, "processes": processes}


class JaegerQueryApi:
    """``GET /api/traces/<trace id>`` over an ``OtlpReceiver``'s spans."""

    def __init__(self, receiver: OtlpReceiver) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                prefix = "/api/traces/"
                spans = (
                    receiver.trace(self.path[len(prefix) :].lower())
                    if self.path.startswith(prefix)
                    else []
                )
                status, body = (
                    (200, {"data": [jaeger_trace(spans)]})
                    if spans
                    else (404, {"data": [], "errors": [{"code": 404, "msg": "trace not found"}]})
                )
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.api = api

    def start(self) -> JaegerQueryApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class FaultProxyProcess:
    """`python -m chaos proxy` between a service and its dependency, as an operator runs it."""

    name: str
    upstream_port: int
    log_path: Path
    port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> FaultProxyProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "chaos",
                    "proxy",
                    "--name",
                    self.name,
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--upstream",
                    f"127.0.0.1:{self.upstream_port}",
                    "--api",
                    f"127.0.0.1:{self.api_port}",
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(
            lambda: httpx.get(f"{self.api}/proxies", timeout=1).status_code == 200,
            timeout=15,
            message="the fault proxy's API never answered",
        )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@dataclass
class ChaosStack(Stack):
    """`redline up` with extra arguments: a dependency behind the fault proxy, faster sagas."""

    chaos_args: tuple[str, ...] = ()

    def argv(self, *extra: str) -> list[str]:
        return super().argv(*self.chaos_args, *extra)


def stack_arguments(proxy: FaultProxyProcess) -> tuple[str, ...]:
    return (
        "--env",
        f"orders:REDLINE_PAYMENTS_URL={proxy.url}",
        # A crashed saga is taken over after 2 s rather than 15 s: the experiments wait less.
        "--env",
        "orders:REDLINE_SAGA_LEASE_SECONDS=2",
        "--env",
        "orders:REDLINE_SAGA_RECOVERY_INTERVAL_SECONDS=0.5",
        # Every charge succeeds, so a cancelled order means the platform cancelled it.
        *NO_RANDOM_DECLINES,
    )


@contextlib.contextmanager
def chaos_stack(base: Path, otlp: OtlpReceiver) -> Any:
    """The stack, its fault proxy (orders → payments) and a trace query API; configuration."""
    stack = ChaosStack.build(base, otlp_endpoint=otlp.endpoint)
    assert isinstance(stack, ChaosStack)
    proxy = FaultProxyProcess("payments", stack.ports["payments"], base / "proxy.log").start()
    jaeger = JaegerQueryApi(otlp).start()
    stack.chaos_args = stack_arguments(proxy)
    try:
        stack.start()
        yield {
            "stack": stack,
            "proxy": proxy,
            "configuration": {
                "redline_state_dir": str(stack.state_dir),
                "fault_proxy_url": proxy.api,
                "jaeger_url": jaeger.url,
            },
        }
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            stack.stop()
        proxy.stop()
        jaeger.stop()
