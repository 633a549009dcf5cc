"""An OTLP/HTTP endpoint that accepts and discards spans, counting bytes and requests."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

REPLY = ExportTraceServiceResponse().SerializeToString()


class Sink(BaseHTTPRequestHandler):
    # Keep-alive, as the Collector's OTLP/HTTP receiver does: an HTTP/1.0 sink
    # would make the exporter connect anew for every batch.
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(REPLY)))
        self.end_headers()
        self.wfile.write(REPLY)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
