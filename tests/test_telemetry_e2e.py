"""The telemetry library end to end, on the inventory service as a real process.

What a Collector/Jaeger would receive (spans over OTLP), what Prometheus would
scrape (/metrics, OpenMetrics with exemplars) and what a log shipper would read
(JSON lines on stdout), checked against each other by trace id.
"""

from __future__ import annotations

import subprocess

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.conftest import require_tool
from tests.harness import ServiceProcess, traceparent, wait_until
from tests.otlp_receiver import OtlpReceiver

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _server_span(otlp: OtlpReceiver, trace_id: str):  # type: ignore[no-untyped-def]
    return otlp.wait_for(lambda s: s.trace_id == trace_id and s.kind == "SERVER")[0]


def test_incoming_traceparent_parents_the_server_span_and_a_db_child(
    inventory: ServiceProcess, otlp: OtlpReceiver
) -> None:
    header, trace_id, parent_id = traceparent()
    r = httpx.get(f"{inventory.url}/products/7", headers={"traceparent": header})
    assert r.status_code == 200

    server = _server_span(otlp, trace_id)
    assert server.parent_span_id == parent_id
    assert server.name == "GET /products/{product_id}"
    assert server.attributes["http.route"] == "/products/{product_id}"
    assert server.attributes["http.request.method"] == "GET"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["url.path"] == "/products/7"
    assert server.resource["service.name"] == "inventory"
    for key in ("service.version", "deployment.environment", "service.instance.id"):
        assert server.resource.get(key), key

    db_spans = otlp.wait_for(
        lambda s: (
            s.trace_id == trace_id and s.parent_span_id == server.span_id and s.kind == "CLIENT"
        )
    )
    assert db_spans[0].name == "SELECT products"  # {db.operation.name} {db.collection.name}
    assert db_spans[0].attributes.get("db.system.name") == "postgresql"
    # Only the one server span: no internal spans for ASGI send/receive.
    assert [s.kind for s in otlp.trace(trace_id)].count("SERVER") == 1
    assert not [s for s in otlp.trace(trace_id) if s.kind == "INTERNAL"]


def test_server_errors_mark_the_span_and_404_keeps_the_template(
    inventory: ServiceProcess, otlp: OtlpReceiver
) -> None:
    header, trace_id, _ = traceparent()
    r = httpx.get(f"{inventory.url}/products/999999", headers={"traceparent": header})
    assert r.status_code == 404
    span = _server_span(otlp, trace_id)
    assert span.name == "GET /products/{product_id}"
    assert span.attributes["http.response.status_code"] == 404
    assert span.status_code != 2  # a 4xx is the client's error, not the server's

    header, trace_id, _ = traceparent()
    httpx.get(f"{inventory.url}/no/such/route", headers={"traceparent": header})
    span = _server_span(otlp, trace_id)
    assert span.name == "GET"  # no template: no raw path in the span name
    assert "http.route" not in span.attributes


def test_response_carries_request_id_and_forwards_a_valid_one(inventory: ServiceProcess) -> None:
    r = httpx.get(f"{inventory.url}/products/1", headers={"x-request-id": "req-abc.123"})
    assert r.headers["x-request-id"] == "req-abc.123"
    r = httpx.get(f"{inventory.url}/products/1", headers={"x-request-id": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"
    assert len(r.headers["x-request-id"]) == 32


def test_openmetrics_exemplar_matches_a_received_span(
    inventory: ServiceProcess, otlp: OtlpReceiver
) -> None:
    header, trace_id, _ = traceparent()
    # A route of its own so the latest exemplar in its bucket is ours.
    assert (
        httpx.get(f"{inventory.url}/products/41/stock", headers={"traceparent": header}).status_code
        == 200
    )
    r = httpx.get(f"{inventory.url}/metrics", headers={"accept": OPENMETRICS})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    exemplar_traces = set()
    for family in text_string_to_metric_families(r.text):  # type: ignore[no-untyped-call]
        if family.name != "http_server_request_duration_seconds":
            continue
        for sample in family.samples:
            if (
                sample.labels.get("http_route") == "/products/{product_id}/stock"
                and sample.exemplar
            ):
                exemplar_traces.add(sample.exemplar.labels["trace_id"])
    assert trace_id in exemplar_traces
    _server_span(otlp, trace_id)  # and the receiver got that very trace


def test_metrics_pass_promtool_and_use_bounded_labels(inventory: ServiceProcess) -> None:
    promtool = require_tool("promtool")
    for i in range(5):
        httpx.get(f"{inventory.url}/random/path/{i}")
        httpx.request("PROPFIND", f"{inventory.url}/products")
    httpx.get(f"{inventory.url}/health/ready")
    httpx.get(f"{inventory.url}/health/live")
    # health_ready is refreshed every couple of seconds, not on scrape.
    text = wait_until(
        lambda: (
            t if "health_ready 1.0" in (t := httpx.get(f"{inventory.url}/metrics").text) else None
        ),
        message="health_ready never reported 1",
    )

    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    series = [
        ln
        for ln in text.splitlines()
        if ln.startswith("http_server_request_duration_seconds_count")
    ]
    assert not any("/random/path" in ln for ln in series), "raw paths must not become labels"
    assert any('http_route="unmatched"' in ln for ln in series)
    assert any('http_request_method="_OTHER"' in ln for ln in series)
    assert not any("PROPFIND" in ln for ln in series)
    assert not any("/health" in ln or "/metrics" in ln for ln in series), (
        "probes are not RED traffic"
    )
    for name in (
        "http_server_active_requests",
        "db_client_operation_duration_seconds_bucket",
        "db_client_connections_usage",
        "db_client_connections_max",
        "process_resident_memory_bytes",
        "health_ready 1.0",
        'health_check_passing{check="postgres"} 1.0',
        'otel_sdk_exporter_span_exported_total{error_type=""}',
        "python_asyncio_event_loop_lag_seconds",
        "python_gc_objects_collected_total",
    ):
        assert name in text, name


def test_every_log_line_of_a_request_carries_its_trace_id(
    inventory: ServiceProcess, otlp: OtlpReceiver
) -> None:
    header, trace_id, _ = traceparent()
    r = httpx.get(
        f"{inventory.url}/products/9999",
        headers={"traceparent": header, "authorization": "Bearer super-secret-token"},
    )
    assert r.status_code == 404
    request_id = r.headers["x-request-id"]
    server = _server_span(otlp, trace_id)

    def lines():  # type: ignore[no-untyped-def]
        return [ln for ln in inventory.log_lines() if ln.get("request_id") == request_id]

    ours = wait_until(lines, message="no log line for the request")
    access = [ln for ln in ours if ln.get("logger") == "access"]
    assert len(access) == 1, "exactly one access line per request (uvicorn's is not doubled)"
    line = access[0]
    assert line["trace_id"] == trace_id == server.trace_id
    assert line["span_id"] == server.span_id
    assert line["route"] == "/products/{product_id}"
    assert line["status"] == 404
    assert line["method"] == "GET"
    assert isinstance(line["duration_ms"], float)
    assert line["client"].startswith("127.0.0.1:")
    assert all(ln["trace_id"] == trace_id for ln in ours)
    assert "super-secret-token" not in inventory.log_path.read_text()
    assert not any(ln.get("logger") == "uvicorn.access" for ln in inventory.log_lines())


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/health", "/metrics"])
def test_probes_and_metrics_are_not_traced(
    inventory: ServiceProcess, otlp: OtlpReceiver, path: str
) -> None:
    header, trace_id, _ = traceparent()
    assert httpx.get(f"{inventory.url}{path}", headers={"traceparent": header}).status_code == 200
    # A traced request sent afterwards arrives; the probe's trace never does.
    header2, trace_id2, _ = traceparent()
    httpx.get(f"{inventory.url}/products/1", headers={"traceparent": header2})
    _server_span(otlp, trace_id2)
    assert otlp.trace(trace_id) == []


def test_a_problem_names_its_type_on_the_server_span(
    inventory: ServiceProcess, otlp: OtlpReceiver
) -> None:
    auth = {"authorization": "Bearer test-admin-token"}
    fault = {
        "faults": [
            {"route": "/products/{product_id}/stock", "error_rate": 1.0, "error_status": 503}
        ]
    }
    assert (
        httpx.put(f"{inventory.ops_url}/admin/faults", json=fault, headers=auth).status_code == 200
    )
    try:
        header, trace_id, _ = traceparent()
        r = httpx.get(f"{inventory.url}/products/3/stock", headers={"traceparent": header})
    finally:
        httpx.delete(f"{inventory.ops_url}/admin/faults", headers=auth)
    assert r.status_code == 503
    span = _server_span(otlp, trace_id)
    assert span.attributes["error.type"] == "injected-fault"
    assert span.status_code == 2
