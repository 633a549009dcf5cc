"""Cost of encoding spans for OTLP: the stock protobuf encoder vs telemetry/_otlp.py.

512 server spans shaped like the middleware's (ten attributes), encoded to
bytes by each, interleaved, medians of CPU time per span.

    .venv/bin/python benchmarks/otlp_encoding.py
"""

from __future__ import annotations

import time

from _report import print_ratio_table
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind

from telemetry._otlp import encode_export_request

ROUNDS = 7
REPEAT = 10


def spans() -> list[ReadableSpan]:
    tracer = TracerProvider().get_tracer("bench")
    out = []
    for i in range(512):
        span = tracer.start_span(
            "GET",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "url.path": f"/products/{i % 320}",
                "url.scheme": "http",
                "network.protocol.version": "1.1",
                "server.address": "127.0.0.1",
                "server.port": 8002,
                "client.address": "127.0.0.1",
                "user_agent.original": "python-httpx/0.28.1",
            },
        )
        span.set_attribute("http.route", "/products/{product_id}")
        span.set_attribute("http.response.status_code", 200)
        span.end()
        out.append(span)
    return out  # type: ignore[return-value]


def per_span(encode: object, batch: list[ReadableSpan]) -> float:
    t = time.process_time()
    for _ in range(REPEAT):
        encode(batch)  # type: ignore[operator]
    return (time.process_time() - t) / REPEAT / len(batch) * 1e6


def main() -> None:
    batch = spans()
    stock = lambda b: encode_spans(b).SerializePartialToString()  # noqa: E731
    results: dict[str, list[float]] = {
        "stock (opentelemetry-exporter-otlp-proto-common)": [],
        "telemetry/_otlp.py": [],
    }
    for _ in range(ROUNDS):
        results["stock (opentelemetry-exporter-otlp-proto-common)"].append(per_span(stock, batch))
        results["telemetry/_otlp.py"].append(per_span(encode_export_request, batch))
    print_ratio_table("OTLP encoding of a server span", "µs CPU per span", results)


if __name__ == "__main__":
    main()
