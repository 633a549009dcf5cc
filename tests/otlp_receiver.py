"""An OTLP/HTTP receiver for tests: what a Collector or Jaeger would be sent.

Decodes real ``ExportTraceServiceRequest`` protobufs (gzip or not) with
``opentelemetry-proto`` and keeps the spans, flattened, for assertions.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

KIND_NAMES = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    service_name: str
    resource: dict[str, Any]
    events: tuple[tuple[str, dict[str, Any]], ...] = field(default=())
    start_ns: int = 0
    end_ns: int = 0
    # (trace_id, span_id, attributes) of each linked span.
    links: tuple[tuple[str, str, dict[str, Any]], ...] = field(default=())


class OtlpReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.spans: list[ReceivedSpan] = []
        self.log_records: list[dict[str, Any]] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    receiver._take_traces(body)
                    reply = ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/logs":
                    receiver._take_logs(body)
                    reply = ExportLogsServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    reply = b""
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.endpoint = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take_traces(self, body: bytes) -> None:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        received = []
        for rs in req.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
            service = str(resource.get("service.name", ""))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    received.append(
                        ReceivedSpan(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=KIND_NAMES.get(s.kind, str(s.kind)),
                            attributes={kv.key: _value(kv.value) for kv in s.attributes},
                            status_code=s.status.code,
                            service_name=service,
                            resource=resource,
                            events=tuple(
                                (e.name, {kv.key: _value(kv.value) for kv in e.attributes})
                                for e in s.events
                            ),
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            links=tuple(
                                (
                                    link.trace_id.hex(),
                                    link.span_id.hex(),
                                    {kv.key: _value(kv.value) for kv in link.attributes},
                                )
                                for link in s.links
                            ),
                        )
                    )
        with self._lock:
            self.spans.extend(received)
            self.requests += 1

    def _take_logs(self, body: bytes) -> None:
        req = ExportLogsServiceRequest()
        req.ParseFromString(body)
        with self._lock:
            for rl in req.resource_logs:
                for sl in rl.scope_logs:
                    for rec in sl.log_records:
                        self.log_records.append(
                            {
                                "body": _value(rec.body),
                                "trace_id": rec.trace_id.hex(),
                                "attributes": {kv.key: _value(kv.value) for kv in rec.attributes},
                            }
                        )

    # -- queries -----------------------------------------------------------------------
    def find(self, predicate: Callable[[ReceivedSpan], bool]) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if predicate(s)]

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return self.find(lambda s: s.trace_id == trace_id)

    def wait_for(
        self,
        predicate: Callable[[ReceivedSpan], bool],
        *,
        count: int = 1,
        timeout: float = 15.0,
    ) -> list[ReceivedSpan]:
        """Poll until ``count`` matching spans arrived; fail with what did arrive."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find(predicate)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                with self._lock:
                    names = sorted({f"{s.service_name}:{s.name}" for s in self.spans})
                raise AssertionError(
                    f"expected {count} matching span(s) within {timeout}s, got {len(found)}; "
                    f"received so far: {names[:40]}"
                )
            time.sleep(0.05)
