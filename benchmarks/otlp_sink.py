"""An OTLP/HTTP endpoint that accepts and discards spans; ``GET /spans`` answers how many came.

Counting means parsing each request (upb, on the sink's own CPU); ``--no-count``
skips it for the benchmarks that only need somewhere to send.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

REPLY = ExportTraceServiceResponse().SerializeToString()
COUNT = "--no-count" not in sys.argv
_spans = 0
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
            n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with _lock:
                _spans += n
        self._answer(REPLY, "application/x-protobuf")

    def do_GET(self) -> None:
        self._answer(str(_spans).encode(), "text/plain")

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
