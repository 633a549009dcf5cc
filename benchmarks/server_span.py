"""Cost of one server span: the SDK's Tracer.start_span and Span vs telemetry's ServerSpans.

Both make the span of a request with a parent-based sampler, set the request's
attributes, name it by route, set the status code and end it into a batch
span processor whose exporter discards; unsampled (the SDK's 10 % case, nine
requests in ten) and sampled. Interleaved rounds, medians, in one process.

    .venv/bin/python benchmarks/server_span.py
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from _report import print_ratio_table
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import DEFAULT_OFF, DEFAULT_ON, Sampler
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from telemetry._server_span import ServerSpan, ServerSpans

N = 20_000
ROUNDS = 7
ATTRIBUTES: dict[str, AttributeValue] = {
    "http.request.method": "GET",
    "url.path": "/products/7",
    "url.scheme": "http",
    "network.protocol.version": "1.1",
    "server.address": "127.0.0.1",
    "server.port": 8000,
    "client.address": "127.0.0.1",
    "user_agent.original": "wrk",
}
AT_END: dict[str, AttributeValue] = {
    "http.route": "/products/{product_id}",
    "http.response.status_code": 200,
}


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def variants(sampler: Sampler) -> dict[str, Callable[[], None]]:
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=N * 2))
    tracer = provider.get_tracer("telemetry.server")
    spans = ServerSpans.for_tracer(tracer, "telemetry.server")
    assert spans is not None

    def sdk() -> None:
        span = tracer.start_span("GET", None, SpanKind.SERVER, attributes=ATTRIBUTES)
        if span.is_recording():
            span.update_name("GET /products/{product_id}")
            span.set_attributes(AT_END)
        span.end()

    def ours() -> None:
        span = spans.span("GET", None)
        if isinstance(span, ServerSpan):
            span.start(ATTRIBUTES, None)
            span.update_name("GET /products/{product_id}")
            span.set_attributes(AT_END)
        span.end()

    return {"SDK start_span + Span": sdk, "ServerSpans": ours}


def per_call(fn: Callable[[], None]) -> float:
    start = time.process_time()
    for _ in range(N):
        fn()
    return (time.process_time() - start) / N * 1e6


def main() -> None:
    for label, sampler in (("unsampled", DEFAULT_OFF), ("sampled", DEFAULT_ON)):
        candidates = variants(sampler)
        results: dict[str, list[float]] = {name: [] for name in candidates}
        for _ in range(ROUNDS):
            for name, fn in candidates.items():
                results[name].append(per_call(fn))
        print()
        print_ratio_table(f"{label} server span", "µs CPU", results)


if __name__ == "__main__":
    main()
