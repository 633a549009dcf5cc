"""`redline trace` and the concise log lines, on what the services really emit.

The trace is a placed order's real spans, exported by the stack's services to
the test OTLP receiver; the waterfall is drawn from them as it is drawn from
Jaeger's answer. Jaeger's own JSON is checked by the live Jaeger test.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from redline.console.logfmt import render
from redline.console.trace import (
    Span,
    Trace,
    critical_path,
    from_jaeger,
    path_time_by_service,
    waterfall,
)
from redline.stack import log_dir
from redline.supervisor import Component, Supervisor
from tests.harness import ROOT, Stack, free_port, sign_up, traceparent
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.slow


def to_span(s: ReceivedSpan) -> Span:
    return Span(
        span_id=s.span_id,
        parent_id=s.parent_span_id,
        service=s.service_name,
        name=s.name,
        start_us=s.start_ns // 1000,
        duration_us=(s.end_ns - s.start_ns) // 1000,
        error=s.status_code == 2,
        kind=s.kind.lower(),
        attributes=s.attributes,
    )


def as_jaeger(trace_id: str, spans: list[ReceivedSpan]) -> dict[str, Any]:
    """The spans as Jaeger's query API returns a trace (``data[0]``)."""
    services = sorted({s.service_name for s in spans})
    pid = {name: f"p{i + 1}" for i, name in enumerate(services)}
    return {
        "traceID": trace_id,
        "spans": [
            {
                "traceID": trace_id,
                "spanID": s.span_id,
                "operationName": s.name,
                "references": (
                    [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": s.parent_span_id}]
                    if s.parent_span_id
                    else []
                ),
                "startTime": s.start_ns // 1000,
                "duration": (s.end_ns - s.start_ns) // 1000,
                "tags": [
                    {"key": "span.kind", "type": "string", "value": s.kind.lower()},
                    *(
                        [{"key": "error", "type": "bool", "value": True}]
                        if s.status_code == 2
                        else []
                    ),
                    *({"key": k, "type": "string", "value": v} for k, v in s.attributes.items()),
                ],
                "processID": pid[s.service_name],
            }
            for s in spans
        ],
        "processes": {pid[n]: {"serviceName": n, "tags": []} for n in services},
    }


@pytest.fixture(scope="module")
def placed_order(stack: Stack, otlp: OtlpReceiver) -> tuple[str, str, list[ReceivedSpan]]:
    """A confirmed order's trace id, order id and every span the stack exported for it."""
    user = sign_up(stack.gateway)
    header, trace_id, _ = traceparent()
    r = httpx.post(
        f"{stack.gateway}/api/v1/orders",
        json={"items": [{"product_id": 9, "quantity": 1}]},
        headers={**user.headers, "idempotency-key": str(uuid.uuid4()), "traceparent": header},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    # Each service exports on its own schedule: wait for every one's server span.
    for service in ("gateway", "orders", "inventory", "payments"):
        otlp.wait_for(
            lambda s, name=service: (  # type: ignore[misc]
                s.trace_id == trace_id and s.service_name == name and s.kind == "SERVER"
            ),
            timeout=15,
        )
    return trace_id, r.json()["id"], otlp.trace(trace_id)


def test_an_orders_waterfall_shows_every_service_in_tree_order_and_its_critical_path(
    placed_order: tuple[str, str, list[ReceivedSpan]],
) -> None:
    trace_id, _, received = placed_order
    trace = Trace(trace_id, tuple(to_span(s) for s in received))
    lines = waterfall(trace, width=120)

    assert lines[0].startswith(f"trace {trace_id} ")
    shown = set(lines[0].split("services: ")[1].split("  ")[0].split(", "))
    assert {"gateway", "orders", "inventory", "payments"} <= shown
    rows = lines[1:-2]
    assert lines[-1].startswith("critical path by service: ")
    assert len(rows) == len(received)
    root = trace.roots()[0]
    assert root.service == "gateway"
    assert "gateway: POST /api/v1/orders" in rows[0]
    assert rows[0].startswith(" *"), "the root is on the critical path"
    # The root's bar starts at the left edge (the trace may outlast it: the order's
    # events are published and mailed after the response); the orders server
    # span is on the path, nested.
    bar = rows[0][rows[0].index("|") + 1 : -1]
    assert bar.startswith("█")
    start = min(s.start_us for s in trace.spans)
    total = max(s.end_us for s in trace.spans) - start
    assert bar.count("█") == max(1, round(root.duration_us / total * len(bar)))
    crit = critical_path(trace)
    orders_server = next(s for s in trace.spans if s.service == "orders" and s.kind == "server")
    assert orders_server.span_id in crit
    orders_row = next(r for r in rows if "orders: POST /orders" in r)
    assert orders_row.startswith(" *")
    assert orders_row.index("orders:") > rows[0].index("gateway:"), "children are indented"


def test_a_span_that_ran_in_the_shadow_of_a_longer_sibling_is_off_the_critical_path() -> None:
    trace = Trace(
        "ab" * 16,
        (
            Span("root", "", "gateway", "GET /", 0, 100),
            Span("long", "root", "orders", "long", 0, 90),
            Span("shadow", "root", "inventory", "parallel", 10, 30),
            Span("tail", "root", "payments", "after", 92, 6),
            Span("leaf", "long", "orders", "SELECT", 5, 80),
        ),
    )
    crit = critical_path(trace)
    assert crit == {"root", "long", "tail", "leaf"}
    assert path_time_by_service(trace, crit) == [("orders", 90), ("payments", 6), ("gateway", 4)]


def test_jaegers_json_gives_the_same_trace_as_the_spans_it_was_made_of(
    placed_order: tuple[str, str, list[ReceivedSpan]],
) -> None:
    trace_id, _, received = placed_order
    direct = Trace(trace_id, tuple(to_span(s) for s in received))
    parsed = from_jaeger(as_jaeger(trace_id, received))
    assert [(s.span_id, s.parent_id, s.service, s.name, s.start_us, s.duration_us, s.error)
            for s in parsed.spans] == [
        (s.span_id, s.parent_id, s.service, s.name, s.start_us, s.duration_us, s.error)
        for s in direct.spans
    ]  # fmt: skip
    assert waterfall(parsed) == waterfall(direct)


def test_an_error_span_is_marked() -> None:
    trace = Trace(
        "ab" * 16,
        (
            Span("1", "", "gateway", "POST /api/v1/orders", 0, 1000),
            Span("2", "1", "orders", "POST /orders", 100, 800, error=True),
        ),
    )
    rows = waterfall(trace, width=80)[1:-2]
    assert rows[1].startswith("!*")
    assert not rows[0].startswith("!")


@pytest.fixture
def jaeger_answering(
    placed_order: tuple[str, str, list[ReceivedSpan]],
) -> Iterator[str]:
    """A stand-in for Jaeger's query API serving the placed order's trace; its URL."""
    trace_id, _, received = placed_order
    body = json.dumps({"data": [as_jaeger(trace_id, received)]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            found = self.path == f"/api/traces/{trace_id}"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if found else b'{"data":null}')

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redline_trace_finds_an_order_by_its_id_in_the_logs(
    stack: Stack, placed_order: tuple[str, str, list[ReceivedSpan]], jaeger_answering: str
) -> None:
    trace_id, order_id, _ = placed_order
    run = subprocess.run(
        [sys.executable, "-m", "redline", "trace", order_id,
         "--state-dir", str(stack.state_dir), "--jaeger", jaeger_answering],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"trace {trace_id} ")
    assert "payments: POST /charges" in run.stdout, run.stdout


def test_redline_trace_says_in_one_line_when_jaeger_is_not_there(stack: Stack) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = subprocess.run(
        [sys.executable, "-m", "redline", "trace", "ab" * 16,
         "--state-dir", str(stack.state_dir), "--jaeger", url],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"redline: Jaeger is not reachable at {url} (ConnectError); "
        "`redline up` runs it when Go can build it (see `redline status`), or pass --jaeger URL"
    ]


def test_a_services_json_line_reads_as_one_short_line(stack: Stack) -> None:
    raw = next(
        ln
        for ln in (log_dir(stack.state_dir) / "gateway.log").read_text().splitlines()
        if '"logger":"access"' in ln and '"trace_id"' in ln
    )
    fields = json.loads(raw)
    line = render(raw)
    assert len(line) < len(raw) / 2
    assert line.split()[1:3] == ["INFO", "request"]
    assert f"{fields['method']} {fields['path']} {fields['status']}" in line
    assert line.endswith(f"trace={fields['trace_id'][:8]}")
    assert render("ts=2026-12-05 level=info msg=hello") == "ts=2026-12-05 level=info msg=hello"


def test_the_supervisor_keeps_json_in_the_file_and_shows_the_terminal_short_lines(
    tmp_path: Any,
) -> None:
    record = {"event": "hello", "level": "warning", "timestamp": "2026-12-05T21:00:00Z",
              "service": "demo", "trace_id": "0123456789abcdef" * 2, "who": "ada"}  # fmt: skip
    terminal = io.StringIO()
    sup = Supervisor(out=terminal, colour=False, log_dir=tmp_path, render=render)
    sup.start(
        Component(
            name="demo",
            argv=[sys.executable, "-c", f"print({json.dumps(json.dumps(record))})"],
            restart=False,
        )
    )
    assert sup.components[0].proc is not None
    sup.components[0].proc.wait(timeout=10)
    sup.stop_all()
    assert (tmp_path / "demo.log").read_text() == json.dumps(record) + "\n"
    shown = [ln for ln in terminal.getvalue().splitlines() if ln.startswith("demo")]
    assert shown == [f"demo       | {render(json.dumps(record))}"]
    assert "WARNING hello who=ada trace=01234567" in shown[0]
