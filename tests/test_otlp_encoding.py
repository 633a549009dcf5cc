"""The hand-written OTLP encoder produces exactly the stock encoder's message."""

from __future__ import annotations

import pytest
import requests
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.span import SpanContext, TraceFlags, TraceState

from telemetry._otlp import EnvironmentOnceSession, encode_export_request


def _spans() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "enc", "n": 3, "flag": True})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer(
        "scope.a", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.26.0"
    )
    other = provider.get_tracer("scope.b")
    remote = SpanContext(
        0xABC,
        0xDEF,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1"), ("x", "y")]),
    )
    with tracer.start_as_current_span(
        "GET /products/{id}",
        kind=SpanKind.SERVER,
        context=trace.set_span_in_context(trace.NonRecordingSpan(remote)),
        attributes={
            "http.request.method": "GET",
            "server.port": 8000,
            "zero": 0,
            "negative": -5,
            "ratio": 0.25,
            "ok": False,
            "empty": "",
            "list": ["a", "b"],
            "ints": [1, 2, 3],
            "big": 2**62,
            "unicode": "naïve ✓",
        },
    ) as server:
        server.add_event("breaker.transition", {"from": "closed", "to": "open", "n": 1})
        server.set_status(Status(StatusCode.ERROR, "boom"))
        with other.start_as_current_span(
            "SELECT",
            kind=SpanKind.CLIENT,
            links=[Link(remote, {"link.attr": "x"})],
        ) as child:
            child.set_attribute("db.system.name", "postgresql")
        with tracer.start_as_current_span("internal"):
            pass
    with tracer.start_as_current_span("root-ok") as root:
        root.set_status(Status(StatusCode.OK))
    return list(memory.get_finished_spans())


def test_hand_written_encoding_parses_to_the_stock_message() -> None:
    spans = _spans()
    stock = encode_spans(spans)
    ours = ExportTraceServiceRequest()
    ours.ParseFromString(encode_export_request(spans))
    assert ours == stock
    # Encoding twice (the attribute cache is warm now) changes nothing.
    again = ExportTraceServiceRequest()
    again.ParseFromString(encode_export_request(spans))
    assert again == stock


def test_empty_batch_is_an_empty_request() -> None:
    assert encode_export_request([]) == b""


def test_a_pair_cached_for_one_field_is_not_reused_for_another() -> None:
    # The same key and value as a resource, span, event and link attribute.
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"flag": True, "k": "v"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    remote = SpanContext(0xABC, 0xDEF, is_remote=True)
    span = provider.get_tracer("t").start_span(
        "s", attributes={"flag": True, "k": "v"}, links=[Link(remote, {"k": "v"})]
    )
    span.add_event("e", {"flag": True, "k": "v"})
    span.end()
    spans = list(memory.get_finished_spans())
    for _ in range(2):  # the second time, every pair comes from the cache
        parsed = ExportTraceServiceRequest.FromString(encode_export_request(spans))
        assert parsed == encode_spans(spans)


def _merge_args(with_proxies: bool) -> tuple[dict[str, str] | None, bool | None, bool | None, None]:
    """proxies, stream, verify and cert as the exporter's requests pass them."""
    return ({}, None, None, None) if with_proxies else (None, True, True, None)


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "localhost"},
        {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "collector.internal,127.0.0.1"},
        {"REQUESTS_CA_BUNDLE": "/etc/ssl/bundle.pem"},
        {"CURL_CA_BUNDLE": "/etc/ssl/curl.pem"},
    ],
    ids=["none", "proxy", "proxy bypassed", "requests bundle", "curl bundle"],
)
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:4318/v1/traces", "https://collector.internal/v1/traces"]
)
@pytest.mark.parametrize("session_verify", [True, "/etc/otel/ca.pem"])
def test_the_exporter_session_merges_the_environment_as_requests_does(
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    url: str,
    session_verify: bool | str,
) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    ours, stock = EnvironmentOnceSession(), requests.Session()
    for session in (ours, stock):
        session.verify = session_verify
    for _ in range(2):  # the second answer comes from what was read the first time
        # Fresh arguments for every call: requests fills the proxies dict it is given.
        for with_proxies in (True, False):
            expected = stock.merge_environment_settings(url, *_merge_args(with_proxies))
            assert ours.merge_environment_settings(url, *_merge_args(with_proxies)) == expected


def test_the_exporter_uses_it_unless_a_credential_provider_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from telemetry._otlp import FastOTLPSpanExporter

    monkeypatch.delenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER", raising=False)
    monkeypatch.delenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER", raising=False)

    def session(exporter: FastOTLPSpanExporter) -> object:
        return exporter._client._transport._session  # type: ignore[attr-defined]  # no public way

    assert isinstance(session(FastOTLPSpanExporter()), EnvironmentOnceSession)
    given = requests.Session()
    assert session(FastOTLPSpanExporter(session=given)) is given
    monkeypatch.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER", "missing")
    with pytest.raises(RuntimeError):  # the stock exporter went to load the named provider
        FastOTLPSpanExporter()
