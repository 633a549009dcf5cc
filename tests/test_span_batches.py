"""telemetry/_span_batches.py: spans encoded where they end, sent by a thread, received whole."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler

from telemetry import REGISTRY
from telemetry._otlp import FastOTLPSpanExporter
from telemetry._span_batches import CHUNK, EncodingSpanProcessor
from telemetry._tracing import build_processor
from tests.harness import free_port
from tests.otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver().start()
    yield r
    r.stop()


def _exporter(port: int) -> FastOTLPSpanExporter:
    return FastOTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=2)


def _end_spans(provider: TracerProvider, service: str, n: int) -> None:
    tracer = provider.get_tracer("test")
    for i in range(n):
        with tracer.start_as_current_span(f"{service} {i}") as span:
            span.set_attribute("i", i)
            with tracer.start_as_current_span(f"{service} {i} child"):
                pass


def _provider(
    service: str, processor: SpanProcessor, sampler: Sampler = ALWAYS_ON
) -> TracerProvider:
    provider = TracerProvider(resource=Resource({"service.name": service}), sampler=sampler)
    provider.add_span_processor(processor)
    return provider


def _shape(receiver: OtlpReceiver, service: str) -> list[tuple[str, str, dict[str, object], bool]]:
    """What each received span of ``service`` says, with its ids made relative."""
    spans = receiver.find(lambda s: s.service_name == service)
    names = {s.span_id: s.name for s in spans}
    return sorted(
        (s.name, names.get(s.parent_span_id, ""), s.attributes, s.end_ns >= s.start_ns > 0)
        for s in spans
    )


def test_the_spans_received_are_the_ones_the_sdks_processor_sends(receiver: OtlpReceiver) -> None:
    """150 spans (chunks of 64, 64, 22; two chunks per POST): the same spans arrive, whole."""
    ours = EncodingSpanProcessor(
        _exporter(receiver.port), schedule_delay_millis=600_000, max_export_batch_size=128
    )
    sdk = BatchSpanProcessor(_exporter(receiver.port), schedule_delay_millis=600_000)
    handed = REGISTRY.get_sample_value(
        "otel_sdk_processor_span_processed_total", {"error_type": ""}
    )
    _end_spans(_provider("ours", ours), "s", 75)
    ours.shutdown()
    assert receiver.requests == 2  # 64 + 64 spans, then the last 22
    assert (
        REGISTRY.get_sample_value("otel_sdk_processor_span_processed_total", {"error_type": ""})
        == (handed or 0) + 150
    )
    _end_spans(_provider("sdk", sdk), "s", 75)
    sdk.shutdown()  # type: ignore[no-untyped-call]
    received = _shape(receiver, "ours")
    assert len(received) == 150
    assert received == _shape(receiver, "sdk")


def test_a_chunk_is_encoded_by_the_thread_that_ends_its_last_span(receiver: OtlpReceiver) -> None:
    processor = EncodingSpanProcessor(_exporter(receiver.port), schedule_delay_millis=600_000)
    encoders: set[str] = set()
    add = processor._add

    def spy(spans: list[ReadableSpan]) -> int:
        encoders.add(threading.current_thread().name)
        return add(spans)

    processor._add = spy  # type: ignore[method-assign]
    provider = _provider("chunks", processor)
    tracer = provider.get_tracer("test")
    for i in range(CHUNK):
        tracer.start_span(f"span {i}").end()
    assert encoders == {threading.current_thread().name}
    assert receiver.find(lambda s: s.service_name == "chunks") == []  # not sent yet
    processor.shutdown()
    assert len(receiver.find(lambda s: s.service_name == "chunks")) == CHUNK


def test_a_partial_chunk_goes_out_after_the_schedule_delay(receiver: OtlpReceiver) -> None:
    processor = EncodingSpanProcessor(_exporter(receiver.port), schedule_delay_millis=50)
    _end_spans(_provider("delayed", processor), "d", 3)
    try:
        receiver.wait_for(lambda s: s.service_name == "delayed", count=6, timeout=10)
    finally:
        processor.shutdown()


def test_unsampled_spans_are_not_sent(receiver: OtlpReceiver) -> None:
    processor = EncodingSpanProcessor(_exporter(receiver.port), schedule_delay_millis=600_000)
    _end_spans(_provider("unsampled", processor, ALWAYS_OFF), "u", 10)
    processor.shutdown()
    assert receiver.find(lambda s: s.service_name == "unsampled") == []


def test_a_full_queue_drops_and_counts_the_newest_spans() -> None:
    """Nothing listens: 150 spans into a queue of 100, never sent; 50 dropped, counted."""

    def dropped() -> float:
        return (
            REGISTRY.get_sample_value(
                "otel_sdk_processor_span_processed_total", {"error_type": "queue_full"}
            )
            or 0.0
        )

    before = dropped()
    processor = EncodingSpanProcessor(
        _exporter(free_port()),
        schedule_delay_millis=600_000,
        max_queue_size=100,
        max_export_batch_size=512,
    )
    tracer = _provider("full", processor).get_tracer("test")
    for i in range(150):
        tracer.start_span(f"span {i}").end()
    assert dropped() - before == 50
    assert processor._queued == 100
    processor.shutdown()  # the export fails (nothing listens) and gives up within its timeout


def test_the_environment_chooses_the_processor_and_its_settings(receiver: OtlpReceiver) -> None:
    exporter = _exporter(receiver.port)
    ours = build_processor(
        exporter,
        {
            "OTEL_BSP_SCHEDULE_DELAY": "250",
            "OTEL_BSP_MAX_QUEUE_SIZE": "300",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "oops",
        },
    )
    assert isinstance(ours, EncodingSpanProcessor)
    assert (ours._delay, ours._max_queue, ours._batch) == (0.25, 300, 300)
    ours.shutdown()
    sdk = build_processor(_exporter(receiver.port), {"REDLINE_SPAN_PROCESSOR": "sdk"})
    assert isinstance(sdk, BatchSpanProcessor)
    sdk.shutdown()  # type: ignore[no-untyped-call]
