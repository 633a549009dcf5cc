"""Trace context the load generator creates, and the requests worth looking up afterwards.

Every request carries a fresh, sampled W3C ``traceparent``: the gateway
continues that trace, so a slow or failed request seen by Locust is one
search away in Jaeger. Locust's own ``--otel`` propagates context only for
``HttpUser``, hence this.

When an OTLP endpoint is configured (:func:`configure`), that traceparent is
the context of the generator's own CLIENT span, the trace's root, exported
from here: the trace then starts where the user's time starts, and its
duration is the one Locust measured. The span says whether the trace is worth
keeping, for a tail sampler downstream: ``redline.load.slowest=true`` when the
request was, as it finished, among the slowest of its endpoint or of the run
(:data:`SLOWEST_ATTRIBUTE`), and status ERROR when Locust counts it as a
failure. Jaeger keeps both (telemetry/jaeger/jaeger.yaml), so every trace id
that ``traces.json`` and ``redline load compare`` list is in Jaeger. Without
an endpoint no span is made: the ids are drawn here, as cheaply as before.

:class:`TraceRecorder` keeps only what the summary shows, cheaply enough to sit
on every request: a bounded min-heap of the slowest (one comparison for a
request that is not among them) and a capped list of failures. Workers drain
theirs into each stats report; the master merges them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.trace import NonRecordingSpan, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from telemetry._server_span import ServerSpans

_log = logging.getLogger("redline.loadtest")

SERVICE_NAME = "redline-load"
# True on a request that was among the slowest of its endpoint, or of the run, when it
# finished: every request the run's lists end with was marked so (a request leaves a
# list only for a slower one). Jaeger's tail sampler keeps these traces.
SLOWEST_ATTRIBUTE = "redline.load.slowest"
# Spans reach the Collector within a second (the SDK default is 5 s): the tail sampler
# decides 5 s after a trace's first span, and this root span comes last.
SCHEDULE_DELAY_MS = 1000
# Thousands of requests a second per process: a second's spans must fit while the
# export greenlet waits its turn (the SDK default, 2048, drops some at full speed).
MAX_QUEUE_SIZE = 16384
# How long the end of a run waits for the last spans to be taken.
FLUSH_TIMEOUT_MS = 10_000
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def new_traceparent() -> tuple[str, str, str]:
    """``(header, trace_id, span_id)`` for a new sampled root; ids are never all zero.

    The module-level generator, not an own ``Random``: Python reseeds it in a
    forked child, so ``--processes`` workers do not share ids. Ids need to be
    unique, not secret.
    """
    trace_id = f"{random.getrandbits(128) or 1:032x}"
    span_id = f"{random.getrandbits(64) or 1:016x}"
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


class RequestTrace:
    """One request's trace: the ``traceparent`` to send, and its span when spans are exported.

    ``slowest`` is set by whoever sees the request finish (the locustfile's
    request listener, from :meth:`TraceRecorder.observe`) before the span ends.
    """

    __slots__ = ("header", "slowest", "span", "trace_id")

    def __init__(self, header: str, trace_id: str, span: Span | None = None) -> None:
        self.header = header
        self.trace_id = trace_id
        self.span = span
        self.slowest = False


def error_type(status: int, error: BaseException | None) -> str:
    """``error.type`` of a failed request: the status code, the exception's type, or ``_OTHER``."""
    if status >= 400:
        return str(status)
    if status == 0 and error is not None:
        return type(error).__name__
    return "_OTHER"  # an answer the journey did not expect, with a status that is no error


def _delivered() -> int:
    """Spans this process's OTLP/HTTP exporter delivered so far."""
    from telemetry._metrics import REGISTRY

    sample = "otel_sdk_exporter_span_exported_total"
    return int(REGISTRY.get_sample_value(sample, {"error_type": ""}) or 0)


class LoadTracer:
    """Starts and ends the generator's CLIENT span per request; no spans without a provider."""

    def __init__(
        self,
        provider: TracerProvider | None = None,
        exporter: SpanExporter | None = None,
        counted: bool = False,
    ) -> None:
        self.provider = provider
        self._exporter = exporter
        # The exporter counts what it delivers (telemetry/_otlp.py's OTLP/HTTP exporter).
        self.counted = counted
        self._delivered_before = _delivered() if counted else 0
        self._tracer: Tracer | None = None
        # The services' lighter span object (telemetry/_server_span.py), where it is
        # equivalent to the SDK's: a fraction of the SDK span's CPU, on the generator's core.
        self._spans: ServerSpans | None = None
        self._host: str | None = None
        self.ended = 0  # spans handed to the exporter
        self._server: dict[str, Any] = {}
        self._base = ""
        if provider is not None:
            from telemetry._server_span import ServerSpans

            self._tracer = provider.get_tracer("loadtests")
            self._spans = ServerSpans.for_tracer(self._tracer, "loadtests")

    @property
    def exporting(self) -> bool:
        return self._tracer is not None

    def _set_host(self, host: str) -> None:
        """The gateway's base URL: ``server.*`` and the start of ``url.full``."""
        parts = urlsplit(host)
        self._host, self._base, self._server = host, host.rstrip("/"), {}
        if parts.hostname:
            self._server["server.address"] = parts.hostname
            self._server["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)

    def start(self, method: str, template: str, host: str, path: str) -> RequestTrace:
        """A request about to leave for ``host`` (the base URL): ``path`` without its query."""
        tracer = self._tracer
        if tracer is None:
            header, trace_id, _ = new_traceparent()
            return RequestTrace(header, trace_id)
        if host != self._host:
            self._set_host(host)
        name = f"{method} {template}"
        attributes = {
            "http.request.method": method,
            "url.template": template,
            "url.full": self._base + path,
            **self._server,
        }
        span: Span
        if self._spans is not None:
            made = self._spans.span(name, None, SpanKind.CLIENT)
            if not isinstance(made, NonRecordingSpan):  # sampled, unless a sampler says otherwise
                made.start(attributes, None)
            span = made
        else:
            span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        ctx = span.get_span_context()
        trace_id = f"{ctx.trace_id:032x}"
        header = f"00-{trace_id}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
        return RequestTrace(header, trace_id, span)

    def end(
        self,
        request: RequestTrace,
        status: int,
        failure: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        """The answer is in and judged: ``failure`` is why Locust counts it as failed."""
        span = request.span
        if span is None:
            return
        request.span = None  # ends once
        if status:
            span.set_attribute("http.response.status_code", status)
        if request.slowest:
            span.set_attribute(SLOWEST_ATTRIBUTE, True)
        if failure is not None:
            span.set_attribute("error.type", error_type(status, error))
            span.set_status(Status(StatusCode.ERROR, failure[:200]))
        span.end()
        self.ended += 1

    def shutdown(self) -> str | None:
        """Export what is left (the run's last spans), as the process quits; a line saying so."""
        if self.provider is None:
            return None
        provider, self.provider = self.provider, None
        # The SDK's flush exports every batch, each retried up to the exporter's timeout,
        # whatever timeout it is given: waited for here, for a bounded time.
        flushed = threading.Event()

        def flush() -> None:
            provider.force_flush()
            flushed.set()

        threading.Thread(target=flush, name="redline-load-flush", daemon=True).start()
        if not flushed.wait(FLUSH_TIMEOUT_MS / 1000) and self._exporter is not None:
            # The endpoint does not take them: the retrying batch gives up and the rest
            # fail at once, rather than the run's results waiting minutes.
            self._exporter.shutdown()
            flushed.wait(FLUSH_TIMEOUT_MS / 1000)
        provider.shutdown()
        if not self.counted:
            return f"{self.ended} request spans handed to the exporter"
        sent = _delivered() - self._delivered_before
        if sent >= self.ended:
            return f"{self.ended} request spans exported"
        return (
            f"WARNING: {self.ended - sent} of {self.ended} request spans not exported "
            "(the trace store may miss their traces)"
        )


# The process's tracer; :func:`configure` replaces it when spans are to be exported.
TRACER = LoadTracer()


def otlp_endpoint(env: Mapping[str, str]) -> str | None:
    """Where the generator's spans go: the standard variables; None for no export."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    for name in ENDPOINT_VARIABLES:
        if value := env.get(name, "").strip():
            return value
    return None


def configure(env: Mapping[str, str] | None = None) -> LoadTracer:
    """Export this process's request spans when an OTLP endpoint is set; call once per process.

    After Locust forked its ``--processes`` workers (the ``init`` event): the
    batch processor's export thread (a greenlet under Locust) belongs to the
    process that made it. The exporter is the services' own
    (:func:`telemetry._tracing.build_exporter`: OTLP/HTTP with the fast
    encoder, or gRPC, by the standard variables).
    """
    global TRACER
    env = os.environ if env is None else env
    endpoint = otlp_endpoint(env)
    if endpoint is None:
        TRACER = LoadTracer()
        return TRACER
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from telemetry._tracing import TracingSettings, build_exporter, build_resource, build_sampler

    settings = TracingSettings(
        service_name=SERVICE_NAME, environment=env.get("REDLINE_ENVIRONMENT", "dev")
    )
    exporter = build_exporter(env)
    provider = TracerProvider(
        resource=build_resource(settings, env), sampler=build_sampler(settings, env)
    )
    if exporter is not None:
        delay = float(env.get("OTEL_BSP_SCHEDULE_DELAY") or SCHEDULE_DELAY_MS)
        queue = int(env.get("OTEL_BSP_MAX_QUEUE_SIZE") or MAX_QUEUE_SIZE)
        provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=delay, max_queue_size=queue)
        )
    from telemetry._otlp import FastOTLPSpanExporter

    TRACER = LoadTracer(provider, exporter, counted=isinstance(exporter, FastOTLPSpanExporter))
    _log.info("request spans (service %s) exported to %s", SERVICE_NAME, endpoint)
    return TRACER


@dataclass(frozen=True, slots=True)
class RequestRecord:
    duration_ms: float
    method: str
    name: str
    status: int  # 0: no response
    trace_id: str
    started_at: float  # Unix time
    error: str | None = None

    def to_wire(self) -> list[Any]:
        return [
            self.duration_ms,
            self.method,
            self.name,
            self.status,
            self.trace_id,
            self.started_at,
            self.error,
        ]

    @classmethod
    def from_wire(cls, row: list[Any]) -> RequestRecord:
        duration, method, name, status, trace_id, started_at, error = row
        return cls(
            float(duration), str(method), str(name), int(status), str(trace_id), float(started_at),
            None if error is None else str(error),
        )  # fmt: skip


class TraceRecorder:
    """The ``slowest`` slowest requests and the first ``max_failures`` failures."""

    def __init__(self, slowest: int = 20, max_failures: int = 50, per_endpoint: int = 5) -> None:
        self.slowest_kept = max(0, slowest)
        self.max_failures = max(0, max_failures)
        # The slowest few of every endpoint too: a regressed fast route's own slow requests
        # are rarely among the run's slowest overall.
        self.per_endpoint = max(0, per_endpoint)
        self._heap: list[tuple[float, int, RequestRecord]] = []
        self._by_endpoint: dict[tuple[str, str], list[tuple[float, int, RequestRecord]]] = {}
        self._failures: list[RequestRecord] = []
        self._seq = itertools.count()
        # Records inserted before this sequence number were shipped (drain).
        self._shipped_before = 0
        self.failures_not_kept = 0
        self.requests = 0  # observed here, ever (a worker's own count)

    def observe(
        self,
        duration_ms: float,
        method: str,
        name: str,
        status: int,
        trace_id: str,
        started_at: float,
        error: str | None = None,
    ) -> bool:
        """Record a finished request; True when it is now among the slowest kept."""
        self.requests += 1
        heap = self._heap
        full = len(heap) >= self.slowest_kept
        mine = self._by_endpoint.get((method, name))
        slow_here = bool(self.per_endpoint) and (
            mine is None or len(mine) < self.per_endpoint or duration_ms > mine[0][0]
        )
        if error is None and not slow_here and full and (not heap or duration_ms <= heap[0][0]):
            return False  # the common case: fast and fine
        record = RequestRecord(duration_ms, method, name, status, trace_id, started_at, error)
        slowest = self._keep_if_slow(record)
        if slow_here:
            slowest = self._keep_for_endpoint(record) or slowest
        if error is not None:
            self._keep_failure(record)
        return slowest

    def _keep_if_slow(self, record: RequestRecord) -> bool:
        if not self.slowest_kept:
            return False
        item = (record.duration_ms, next(self._seq), record)
        if len(self._heap) < self.slowest_kept:
            heapq.heappush(self._heap, item)
        elif record.duration_ms > self._heap[0][0]:
            heapq.heapreplace(self._heap, item)
        else:
            return False
        return True

    def _keep_for_endpoint(self, record: RequestRecord) -> bool:
        if not self.per_endpoint:
            return False
        heap = self._by_endpoint.setdefault((record.method, record.name), [])
        item = (record.duration_ms, next(self._seq), record)
        if len(heap) < self.per_endpoint:
            heapq.heappush(heap, item)
        elif record.duration_ms > heap[0][0]:
            heapq.heapreplace(heap, item)
        else:
            return False
        return True

    def slowest_by_endpoint(self) -> dict[str, list[RequestRecord]]:
        return {
            f"{method} {name}": [r for _, _, r in sorted(heap, key=lambda item: -item[0])]
            for (method, name), heap in sorted(self._by_endpoint.items())
        }

    def _keep_failure(self, record: RequestRecord) -> None:
        if len(self._failures) < self.max_failures:
            self._failures.append(record)
        else:
            self.failures_not_kept += 1

    def slowest(self) -> list[RequestRecord]:
        return [r for _, _, r in sorted(self._heap, key=lambda item: -item[0])]

    def failures(self) -> list[RequestRecord]:
        return sorted(self._failures, key=lambda r: r.started_at)

    def reset(self) -> None:
        self._heap.clear()
        self._by_endpoint.clear()
        self._failures.clear()
        self.failures_not_kept = 0

    def drain(self) -> dict[str, Any]:
        """What a worker ships to the master with a stats report.

        The slowest lists stay (only what entered them since the last report
        is shipped): a request is marked slowest against the whole run's
        lists, not against the few seconds since the last report. Every
        record a worker's final lists hold was shipped in the report after it
        entered them, so the master's merge is still exact. Failures start afresh.
        """
        since = self._shipped_before
        self._shipped_before = next(self._seq)
        by_endpoint = [item for heap in self._by_endpoint.values() for item in heap]
        payload = {
            "slowest": [r.to_wire() for _, seq, r in self._heap if seq >= since],
            "failures": [r.to_wire() for r in self._failures],
            "by_endpoint": [r.to_wire() for _, seq, r in by_endpoint if seq >= since],
            "failures_not_kept": self.failures_not_kept,
            "requests": self.requests,
        }
        self._failures.clear()
        self.failures_not_kept = 0
        return payload

    def merge(self, payload: dict[str, Any]) -> None:
        """Take in a worker's drained records (the union of its top-N per report is enough)."""
        for row in payload.get("slowest", []):
            self._keep_if_slow(RequestRecord.from_wire(row))
        for row in payload.get("failures", []):
            self._keep_failure(RequestRecord.from_wire(row))
        for row in payload.get("by_endpoint", []):
            self._keep_for_endpoint(RequestRecord.from_wire(row))
        self.failures_not_kept += int(payload.get("failures_not_kept", 0))
