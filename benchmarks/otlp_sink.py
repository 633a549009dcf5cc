"""An OTLP/HTTP endpoint that accepts and discards spans; ``GET /spans`` answers how many came.

``GET /names`` answers a JSON object: spans received by ``service: span name``.

Counting means parsing each request (upb, on the sink's own CPU); ``--no-count``
skips it for the benchmarks that only need somewhere to send.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

REPLY = ExportTraceServiceResponse().SerializeToString()
COUNT = "--no-count" not in sys.argv
_spans = 0
_names: Counter[str] = Counter()
_lock = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    # Keep-alive, as the Collector's OTLP/HTTP receiver does: an HTTP/1.0 sink
    # would make the exporter connect anew for every batch.
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        global _spans
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if COUNT and self.path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            names: Counter[str] = Counter()
            for rs in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in rs.resource.attributes
                        if a.key == "service.name"
                    ),
                    "?",
                )
                for ss in rs.scope_spans:
                    names.update(f"{service}: {span.name}" for span in ss.spans)
            with _lock:
                _spans += names.total()
                _names.update(names)
        self._answer(REPLY, "application/x-protobuf")

    def do_GET(self) -> None:
        if self.path == "/names":
            with _lock:
                self._answer(json.dumps(_names).encode(), "application/json")
        else:
            self._answer(str(_spans).encode(), "text/plain")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
