"""Client side of an HTTP call: CLIENT span, context propagation, metrics.

An httpx transport wrapper, so every request sent through the client is seen
whatever composes on top of it (the resilient client sends each retry attempt
through here, giving one span per attempt as the semantic conventions ask).
Hand-written rather than opentelemetry-instrumentation-httpx because that one
records OpenTelemetry metrics, not prometheus-client histograms with exemplars,
and has no notion of the downstream service's name.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from telemetry._logging import current_request_id
from telemetry._metrics import HTTP_CLIENT_ACTIVE, HTTP_CLIENT_DURATION, normalize_method

# Set by callers in request.extensions to name the span by template, not raw URL.
URL_TEMPLATE_EXTENSION = "url_template"
RESEND_COUNT_EXTENSION = "resend_count"


class InstrumentedTransport(httpx.AsyncBaseTransport):
    """Wraps another transport; ``peer_service`` names the downstream in spans and metrics."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        peer_service: str,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._inner = inner
        self.peer_service = peer_service
        # Fetched here, after tracing is configured: a module-level tracer
        # would be a proxy costing a call per span.
        self._tracer = trace.get_tracer("telemetry.client", tracer_provider=tracer_provider)
        self._active = HTTP_CLIENT_ACTIVE.labels(peer_service)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method = normalize_method(request.method)
        url = request.url
        template = request.extensions.get(URL_TEMPLATE_EXTENSION)
        name = "HTTP" if method == "_OTHER" else method
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
            # Without query and credentials, as the conventions ask; built from
            # the parts because url.copy_with() re-parses the URL (~28 µs).
            "url.full": f"{url.scheme}://{url.netloc.decode('ascii')}"
            f"{url.raw_path.partition(b'?')[0].decode('ascii')}",
            "peer.service": self.peer_service,
        }
        if template:
            attributes["url.template"] = template
            name = f"{name} {template}"
        resend = request.extensions.get(RESEND_COUNT_EXTENSION)
        if resend:
            attributes["http.request.resend_count"] = resend
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        ctx = trace.set_span_in_context(span)
        propagate.inject(request.headers, context=ctx)
        request_id = current_request_id()
        if request_id and "x-request-id" not in request.headers:
            request.headers["x-request-id"] = request_id

        self._active.inc()
        start = time.perf_counter()
        status = ""
        error_type = ""
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            error_type = type(exc).__qualname__
            span.record_exception(exc)
            raise
        else:
            status = str(response.status_code)
            if response.status_code >= 500:
                error_type = status
            return response
        finally:
            duration = time.perf_counter() - start
            self._active.dec()
            if status:
                span.set_attribute("http.response.status_code", int(status))
            if error_type:
                span.set_attribute("error.type", error_type)
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            child = HTTP_CLIENT_DURATION.labels(
                url.host, self.peer_service, method, status, error_type
            )
            sc = span.get_span_context()
            if sc.trace_flags.sampled:
                child.observe(
                    duration,
                    {
                        "trace_id": format(sc.trace_id, "032x"),
                        "span_id": format(sc.span_id, "016x"),
                    },
                )
            else:
                child.observe(duration)

    async def aclose(self) -> None:
        await self._inner.aclose()
