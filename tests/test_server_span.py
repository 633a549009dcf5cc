"""The server span must be the span the SDK would make: same decision, same ids, same export.

Both paths draw their ids from the ``random`` module in the same order, so from
one seed the SDK's ``start_span`` and ``ServerSpans`` must give identical span
contexts, and, driven through the same calls, identical exported spans.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from telemetry._otlp import encode_export_request
from telemetry._server_span import ServerSpan, ServerSpans

NAME = "telemetry.server"
SUPPORTED: dict[str, Callable[[], Sampler]] = {
    "parentbased_traceidratio 0.1": lambda: ParentBasedTraceIdRatio(0.1),
    "parentbased_traceidratio 0.5": lambda: ParentBasedTraceIdRatio(0.5),
    "parentbased_always_on": lambda: DEFAULT_ON,
    "parentbased_always_off": lambda: DEFAULT_OFF,
}
PARENTS = {
    "root": None,
    "remote unsampled": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    "remote unsampled, random flag": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02",
    "remote sampled": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "remote sampled, random flag": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03",
    "invalid": "00-00000000000000000000000000000000-b7ad6b7169203331-01",
}
ATTRIBUTES: dict[str, AttributeValue] = {
    "http.request.method": "GET",
    "url.path": "/orders/7",
    "server.port": 8000,
    "ratio": 0.5,
    "flag": True,
    "tags": ("a", "b"),
}


def _parent(traceparent: str | None) -> Context | None:
    if traceparent is None:
        return None
    carrier = {"traceparent": traceparent, "tracestate": "vendor=value"}
    return TraceContextTextMapPropagator().extract(carrier)


class Pipeline:
    """A provider whose finished spans are kept, and both ways to start a server span."""

    def __init__(self, sampler: Sampler) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer(NAME)
        spans = ServerSpans.for_tracer(self.tracer, NAME)
        assert spans is not None
        self.spans = spans

    def sdk(self, parent: Context | None) -> trace.Span:
        return self.tracer.start_span("GET", parent, SpanKind.SERVER, attributes=ATTRIBUTES)

    def ours(self, parent: Context | None) -> trace.Span:
        span = self.spans.span("GET", parent)
        if isinstance(span, ServerSpan):
            span.start(ATTRIBUTES, parent)
        return span

    def finished(self) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        return spans


def _context(span: trace.Span) -> tuple[object, ...]:
    ctx = span.get_span_context()
    return (
        span.is_recording(),
        ctx.trace_id,
        ctx.span_id,
        int(ctx.trace_flags),
        ctx.is_remote,
        ctx.trace_state.to_header(),
    )


def _without_start_times(message: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    """Zero the one clock reading the two paths cannot share."""
    for resource_spans in message.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                span.start_time_unix_nano = 0
    return message


def _exported(spans: list[ReadableSpan]) -> ExportTraceServiceRequest:
    """The stock encoding, start times zeroed."""
    return _without_start_times(encode_spans(spans))


@pytest.mark.parametrize("sampler_name", SUPPORTED)
@pytest.mark.parametrize("parent_name", PARENTS)
def test_same_decisions_and_span_contexts_as_the_sdk(sampler_name: str, parent_name: str) -> None:
    pipeline = Pipeline(SUPPORTED[sampler_name]())
    parent = _parent(PARENTS[parent_name])
    recorded: Counter[bool] = Counter()
    for seed in range(200):
        random.seed(seed)
        expected = _context(pipeline.sdk(parent))
        random.seed(seed)
        span = pipeline.ours(parent)
        assert _context(span) == expected, f"seed {seed}"
        recorded[span.is_recording()] += 1
    if sampler_name.endswith("0.1") and parent_name in ("root", "invalid"):
        assert 5 <= recorded[True] <= 40, recorded  # both outcomes, near the ratio


def _drive(span: trace.Span) -> None:
    """What a request does to its server span, including the SDK's edge cases."""
    span.set_attribute("url.path", "/orders/{id}")  # an update moves the key to the end
    span.set_attribute("", "empty keys are dropped")
    span.set_attribute("bad", {"dicts": "are not attribute values"})
    span.set_attributes({"http.route": "/orders/{id}", "http.response.status_code": 503})
    span.update_name("GET /orders/{id}")
    span.add_event("retry", {"attempt": 2, "ids": [1, 2]}, timestamp=1_000)
    try:
        raise ValueError("stock is gone")
    except ValueError as exc:
        span.record_exception(exc, {"extra": "x"}, timestamp=2_000)
    span.add_link(SpanContext(0xABC, 0xDEF, is_remote=True), {"link.kind": "follows"})
    span.add_link(SpanContext(0, 0, is_remote=False))  # invalid, no attributes: ignored
    span.set_status(Status(StatusCode.ERROR, "inventory unavailable"))
    span.set_status(StatusCode.UNSET)  # ignored
    span.end(end_time=3_000)
    span.set_attribute("late", 1)  # ignored, with a warning
    span.end()  # ignored, with a warning


@pytest.mark.parametrize("parent_name", ["root", "remote sampled, random flag"])
def test_the_exported_span_is_the_sdks(parent_name: str) -> None:
    pipeline = Pipeline(DEFAULT_ON)
    parent = _parent(PARENTS[parent_name])
    random.seed(1)
    _drive(pipeline.sdk(parent))
    expected = pipeline.finished()
    random.seed(1)
    _drive(pipeline.ours(parent))
    ours = pipeline.finished()
    assert len(expected) == len(ours) == 1
    assert _exported(ours) == _exported(expected)
    # And the hand-written encoder reads it the same way.
    parsed = ExportTraceServiceRequest.FromString(encode_export_request(ours))
    assert _without_start_times(parsed) == _exported(expected)


def test_an_ok_status_is_final_as_in_the_sdk() -> None:
    pipeline = Pipeline(DEFAULT_ON)
    exported = []
    for start in (pipeline.sdk, pipeline.ours):
        random.seed(5)
        span = start(None)
        span.set_status(StatusCode.OK)
        span.set_status(Status(StatusCode.ERROR, "too late"))
        span.end(end_time=5)
        (finished,) = pipeline.finished()
        assert finished.status.status_code is StatusCode.OK
        exported.append(_exported([finished]))
    assert exported[0] == exported[1]


def test_attribute_and_event_limits_match_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "4")
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "1")
    pipeline = Pipeline(DEFAULT_ON)
    exported = []
    for start in (pipeline.sdk, pipeline.ours):
        random.seed(3)
        span = start(None)
        for i in range(6):
            span.set_attribute(f"extra.{i}", i)
        span.add_event("first", timestamp=1)
        span.add_event("second", timestamp=2)
        span.end(end_time=5)
        (finished,) = pipeline.finished()
        assert finished.dropped_attributes == 8  # 6 given at start + 6 more, 4 kept
        assert finished.dropped_events == 1
        exported.append(_exported([finished]))
    assert exported[0] == exported[1]


def test_children_parent_to_the_server_span() -> None:
    pipeline = Pipeline(ParentBasedTraceIdRatio(1.0))
    server = pipeline.ours(None)
    assert isinstance(server, ServerSpan)
    child = pipeline.tracer.start_span("SELECT", trace.set_span_in_context(server))
    child.end()
    server.end()
    child_span, server_span = pipeline.finished()
    assert child_span.parent is not None
    assert child_span.parent.span_id == server.get_span_context().span_id
    assert child_span.context is not None
    assert child_span.context.trace_id == server.get_span_context().trace_id
    assert child_span.context.trace_flags.sampled
    assert server_span.kind is SpanKind.SERVER
    assert server_span.instrumentation_scope is not None
    assert server_span.instrumentation_scope.name == NAME


class _CustomRoot(Sampler):
    def should_sample(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        return ALWAYS_ON.should_sample(*args, **kwargs)  # type: ignore[arg-type]

    def get_description(self) -> str:
        return "Custom"


class _CountingIds(RandomIdGenerator):
    pass


@pytest.mark.parametrize(
    "provider",
    [
        lambda: TracerProvider(sampler=ALWAYS_ON),
        lambda: TracerProvider(sampler=ALWAYS_OFF),
        # Not parent-based: the parent's flag is not the decision.
        lambda: TracerProvider(sampler=TraceIdRatioBased(0.1)),
        lambda: TracerProvider(sampler=ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)),
        lambda: TracerProvider(sampler=ParentBased(_CustomRoot())),
        lambda: TracerProvider(sampler=DEFAULT_ON, id_generator=_CountingIds()),
    ],
    ids=[
        "always_on",
        "always_off",
        "traceidratio",
        "other delegates",
        "custom root",
        "custom ids",
    ],
)
def test_the_sdk_makes_every_span_when_it_cannot_be_reproduced(
    provider: Callable[[], TracerProvider],
) -> None:
    assert ServerSpans.for_tracer(provider().get_tracer(NAME), NAME) is None


def test_the_sdk_makes_every_span_under_an_attribute_length_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "16")
    tracer = TracerProvider(sampler=DEFAULT_ON).get_tracer(NAME)
    assert ServerSpans.for_tracer(tracer, NAME) is None


def test_unsampled_child_of_an_unsampled_parent_keeps_its_trace() -> None:
    pipeline = Pipeline(ParentBasedTraceIdRatio(0.1))
    parent = _parent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")
    span = pipeline.ours(parent)
    ctx = span.get_span_context()
    assert not span.is_recording()
    assert ctx.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert ctx.span_id != 0xB7AD6B7169203331
    assert ctx.trace_flags == TraceFlags(TraceFlags.DEFAULT)
    assert ctx.trace_state.to_header() == "vendor=value"
    assert pipeline.finished() == []


def test_links_given_as_objects_are_kept() -> None:
    pipeline = Pipeline(DEFAULT_ON)
    span = pipeline.ours(None)
    span.add_link(SpanContext(0x1, 0x2, is_remote=False))
    span.end()
    (finished,) = pipeline.finished()
    assert [link.context.span_id for link in finished.links] == [0x2]
    assert isinstance(finished.links[0], Link)


@pytest.mark.parametrize("sampler_name", SUPPORTED)
@pytest.mark.parametrize("parent_name", ["root", "remote unsampled", "remote sampled, random flag"])
def test_a_client_span_under_the_request_span_is_the_sdks(
    sampler_name: str, parent_name: str
) -> None:
    """The resilient client's CLIENT spans (telemetry/_http_client.py): under a local parent."""
    pipeline = Pipeline(SUPPORTED[sampler_name]())
    incoming = _parent(PARENTS[parent_name])
    for seed in range(50):
        random.seed(seed)
        server = pipeline.ours(incoming)
        local = trace.set_span_in_context(server, incoming)
        state = random.getstate()
        expected = pipeline.tracer.start_span("GET /products/{id}", local, SpanKind.CLIENT)
        expected_context = _context(expected)
        expected.end(end_time=9)
        random.setstate(state)
        ours = pipeline.spans.span("GET /products/{id}", local, SpanKind.CLIENT)
        if isinstance(ours, ServerSpan):
            ours.start({}, local)
        assert _context(ours) == expected_context, f"seed {seed}"
        ours.end(end_time=9)
        server.end()
        finished = pipeline.finished()
        sampled = server.get_span_context().trace_flags.sampled
        assert len(finished) == (3 if sampled else 0)
        if sampled:
            sdk_span, our_span, _ = finished
            assert our_span.kind is SpanKind.CLIENT
            assert our_span.parent == sdk_span.parent == server.get_span_context()
            assert _exported([our_span]) == _exported([sdk_span])
