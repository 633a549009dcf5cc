"""Trace context per request, and the bounded record of the slowest and failed ones."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from loadtests import run, summary, tracing
from loadtests.tracing import (
    SERVICE_NAME,
    SLOWEST_ATTRIBUTE,
    LoadTracer,
    TraceRecorder,
    new_traceparent,
)
from redline.state import write_state
from tests.otlp_receiver import OtlpReceiver

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")
# The SDK's context also sets W3C level 2's "random trace id" flag (0x02).
SAMPLED_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[13]$")


def test_each_request_gets_a_new_sampled_w3c_traceparent() -> None:
    seen = set()
    for _ in range(1000):
        header, trace_id, span_id = new_traceparent()
        m = TRACEPARENT.match(header)
        assert m, header
        assert (m[1], m[2]) == (trace_id, span_id)
        assert trace_id != "0" * 32
        assert span_id != "0" * 16
        seen.add(trace_id)
    assert len(seen) == 1000


def _observe(
    recorder: TraceRecorder, durations: list[float], *, fail_every: int = 0, first: int = 0
) -> None:
    """Request i (from ``first``) took durations[i]; every ``fail_every``-th failed."""
    for i, ms in enumerate(durations, first):
        failed = bool(fail_every) and i % fail_every == 0
        recorder.observe(
            ms, "GET", "/api/v1/products", 500 if failed else 200, f"{i:032x}", 1_700_000_000 + i,
            "expected 200, got 500" if failed else None,
        )  # fmt: skip


def test_recorder_keeps_exactly_the_slowest_n_in_order() -> None:
    durations = [random.uniform(1, 1000) for _ in range(5000)]
    recorder = TraceRecorder(slowest=10, max_failures=5)
    _observe(recorder, durations)
    assert [r.duration_ms for r in recorder.slowest()] == sorted(durations, reverse=True)[:10]
    assert recorder.requests == 5000


def test_recorder_caps_failures_and_counts_the_rest() -> None:
    recorder = TraceRecorder(slowest=3, max_failures=5)
    _observe(recorder, [1.0] * 100, fail_every=10)
    assert len(recorder.failures()) == 5
    assert recorder.failures_not_kept == 5
    assert all(r.status == 500 and r.error for r in recorder.failures())


def test_master_merging_worker_reports_equals_one_process_seeing_everything() -> None:
    durations = [random.uniform(1, 1000) for _ in range(3000)]
    alone = TraceRecorder(slowest=15, max_failures=1000)
    _observe(alone, durations, fail_every=7)
    master = TraceRecorder(slowest=15, max_failures=1000)
    workers = [TraceRecorder(slowest=15, max_failures=1000) for _ in range(2)]
    for start in range(0, 3000, 500):  # a report every 500 requests, workers taking turns
        worker = workers[(start // 500) % 2]
        _observe(worker, durations[start : start + 500], fail_every=7, first=start)
        wire = json.loads(json.dumps(worker.drain()))  # what a message round trip leaves
        master.merge(wire)
    assert master.slowest() == alone.slowest()
    assert {r.trace_id for r in master.failures()} == {r.trace_id for r in alone.failures()}
    assert sum(w.requests for w in workers) == 3000


def test_summary_lists_trace_ids_with_jaeger_links_and_writes_them(tmp_path: Path) -> None:
    recorder = TraceRecorder(slowest=2, max_failures=1)
    _observe(recorder, [5.0, 900.0, 12.0, 300.0], fail_every=2)
    data = summary.report(recorder, "http://jaeger:16686/")
    text = summary.render(data)
    slow_id, failed_id = f"{1:032x}", f"{0:032x}"
    assert f"http://jaeger:16686/trace/{slow_id}" in text
    assert [r["duration_ms"] for r in data["slowest"]] == [900.0, 300.0]
    assert data["failures"][0]["trace_id"] == failed_id
    assert data["failures_not_listed"] == 1
    assert "1 more failures, not listed" in text
    path = tmp_path / "run" / "traces.json"
    summary.write(path, data)
    assert json.loads(path.read_text()) == data


def test_each_endpoint_keeps_its_own_slowest_even_when_another_owns_the_run_s_slowest() -> None:
    worker, master = TraceRecorder(slowest=3, per_endpoint=2), TraceRecorder(3, per_endpoint=2)
    for i in range(50):
        worker.observe(1000.0 + i, "POST", "/orders", 201, f"o{i}", 0.0)
        worker.observe(10.0 + i % 7, "GET", "/products", 200, f"p{i}", 0.0)
    master.merge(worker.drain())
    assert [r.name for r in master.slowest()] == ["/orders"] * 3
    by_endpoint = master.slowest_by_endpoint()
    assert [r.duration_ms for r in by_endpoint["GET /products"]] == [16.0, 16.0]
    assert [r.trace_id for r in by_endpoint["POST /orders"]] == ["o49", "o48"]


# -- the generator's own span per request ---------------------------------------------


def _tracer() -> tuple[LoadTracer, InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return LoadTracer(provider), exported


def test_without_an_endpoint_no_span_is_made_and_the_ids_are_drawn_as_before() -> None:
    assert tracing.otlp_endpoint({}) is None
    tracer = tracing.configure({})
    assert not tracer.exporting
    request = tracer.start("GET", "/api/v1/products", "http://127.0.0.1:8000", "/api/v1/products")
    m = TRACEPARENT.match(request.header)
    assert m, request.header
    assert m[1] == request.trace_id
    assert request.span is None
    tracer.end(request, 200)  # nothing to end


def test_each_request_is_a_client_span_whose_context_is_the_traceparent_sent() -> None:
    tracer, exported = _tracer()
    request = tracer.start(
        "GET", "/api/v1/products/{product_id}", "http://gw.example:8000/", "/api/v1/products/7"
    )
    m = SAMPLED_TRACEPARENT.match(request.header)
    assert m, request.header
    tracer.end(request, 200)
    tracer.end(request, 200)  # once
    (span,) = exported.get_finished_spans()
    ctx = span.get_span_context()
    assert ctx is not None
    assert (m[1], m[2]) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert span.parent is None
    assert span.kind is SpanKind.CLIENT
    assert span.name == "GET /api/v1/products/{product_id}"
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.template": "/api/v1/products/{product_id}",
        "url.full": "http://gw.example:8000/api/v1/products/7",
        "server.address": "gw.example",
        "server.port": 8000,
        "http.response.status_code": 200,
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.resource.attributes["service.name"] == SERVICE_NAME


def test_failures_are_errors_and_the_slowest_ask_to_be_kept() -> None:
    tracer, exported = _tracer()
    host = "https://gw.example"
    answers = [
        (404, "expected 200, got 404", None, "404"),
        (0, "no answer", ConnectionRefusedError(111, "refused"), "ConnectionRefusedError"),
        (200, "a resent Idempotency-Key was not replayed", None, "_OTHER"),
    ]
    for status, failure, error, _ in answers:
        tracer.end(
            tracer.start("POST", "/api/v1/orders", host, "/api/v1/orders"), status, failure, error
        )
    slow = tracer.start("GET", "/api/v1/products", host, "/api/v1/products")
    slow.slowest = True
    tracer.end(slow, 200)
    expected_402 = tracer.start("POST", "/api/v1/orders", host, "/api/v1/orders")
    tracer.end(expected_402, 402)  # a declined card the journey expected: no failure
    spans = exported.get_finished_spans()
    for span, (status, failure, _, kind) in zip(spans, answers, strict=False):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == failure
        assert span.attributes is not None
        assert span.attributes["error.type"] == kind
        assert span.attributes.get("http.response.status_code") == (status or None)
        assert span.attributes["server.port"] == 443
        assert SLOWEST_ATTRIBUTE not in span.attributes
    assert spans[3].attributes is not None
    assert spans[3].attributes[SLOWEST_ATTRIBUTE] is True
    assert spans[4].status.status_code is StatusCode.UNSET
    assert spans[4].attributes is not None
    assert "error.type" not in spans[4].attributes


def test_the_standard_variables_say_where_spans_go() -> None:
    url = "http://collector:4318"
    assert tracing.otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": url}) == url
    traces = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces"}
    assert (
        tracing.otlp_endpoint({**traces, "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}) == f"{url}/v1/traces"
    )
    assert tracing.otlp_endpoint({**traces, "OTEL_TRACES_EXPORTER": "none"}) is None
    assert tracing.otlp_endpoint({**traces, "OTEL_SDK_DISABLED": "true"}) is None


def test_the_spans_reach_an_otlp_endpoint_and_the_run_says_how_many(
    otlp: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint)  # the exporter reads it
    tracer = tracing.configure()
    try:
        assert tracer.exporting
        request = tracer.start("GET", "/api/v1/products", "http://127.0.0.1:8000", "/x")
        request.slowest = True
        tracer.end(request, 200)
        tracer.end(tracer.start("GET", "/", "http://127.0.0.1:8000", "/"), 503, "got 503")
    finally:
        line = tracer.shutdown()
        tracing.configure({})
    assert line == "2 request spans exported"
    (span,) = otlp.trace(request.trace_id)
    assert span.service_name == SERVICE_NAME
    assert span.kind == "CLIENT"
    assert not span.parent_span_id
    assert span.attributes[SLOWEST_ATTRIBUTE] is True
    assert request.header.split("-")[2] == span.span_id


def test_redline_load_finds_the_stacks_collector_unless_told(tmp_path: Path) -> None:
    env = {"REDLINE_STATE_DIR": str(tmp_path)}
    assert run.span_environment(None, env)[1] is None  # no stack, no variable: no spans
    collector = {"url": "http://127.0.0.1:14318", "pid": os.getpid()}
    write_state(tmp_path, {"components": {"collector": collector}})
    child, to = run.span_environment(None, env)
    assert to == "http://127.0.0.1:14318/v1/traces"
    assert child["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == to
    assert tracing.otlp_endpoint(child) == to
    given = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://elsewhere:4318"}
    assert run.span_environment(None, given)[1] == "http://elsewhere:4318"
    child, to = run.span_environment("none", given)
    assert to is None
    assert tracing.otlp_endpoint(child) is None
    for off in ({"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_SDK_DISABLED": "true"}):
        assert run.span_environment(None, {**env, **off})[1] is None  # as the user said
        child, to = run.span_environment("http://mine:4318/", {**env, **off})
        assert to == "http://mine:4318/v1/traces"  # unless told here
        assert tracing.otlp_endpoint(child) == to
    write_state(tmp_path, {"components": {"collector": {**collector, "pid": 2**22 + 1}}})
    assert run.span_environment(None, env)[1] is None  # the stack is gone


def test_every_request_the_lists_end_with_was_marked_slowest_when_it_finished() -> None:
    """Marking at insertion keeps a superset of the final lists, through workers' drains too."""
    rng = random.Random(7)
    endpoints = [("GET", "/api/v1/products"), ("GET", "/p/{id}"), ("POST", "/api/v1/orders")]
    master = TraceRecorder(slowest=20, per_endpoint=5)
    workers = [TraceRecorder(slowest=20, per_endpoint=5) for _ in range(2)]
    marked: set[str] = set()
    n = 6000
    for i in range(n):
        method, name = endpoints[i % 3]
        worker = workers[i % 2]
        if worker.observe(rng.lognormvariate(3, 0.6), method, name, 200, f"{i:032x}", i):
            marked.add(f"{i:032x}")
        if i % 700 == 699:  # a stats report
            master.merge(json.loads(json.dumps(worker.drain())))
    for worker in workers:
        master.merge(worker.drain())
    listed = {r.trace_id for r in master.slowest()}
    listed |= {r.trace_id for rows in master.slowest_by_endpoint().values() for r in rows}
    assert listed <= marked
    # Few enough for a trace store: about N·ln(n/N) per list and report, not all.
    assert len(marked) < n / 20, len(marked)


def test_exporting_spans_does_not_import_the_services_framework() -> None:
    """The telemetry package loads its public names on first use (1.6 s of Litestar and httpx)."""
    import subprocess
    import sys

    probe = (
        "import sys, telemetry._otlp, telemetry._server_span, telemetry._tracing\n"
        "print(sorted(m for m in ('litestar', 'httpx') if m in sys.modules))\n"
        "import telemetry\n"
        "assert set(telemetry.__all__) == set(telemetry._SOURCES), 'one list of names'\n"
        "print(all(getattr(telemetry, name) is not None for name in telemetry.__all__))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"], done.stdout
