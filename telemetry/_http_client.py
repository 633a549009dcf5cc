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
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any, Protocol, TypeVar

import httpx
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from telemetry._logging import current_request_id
from telemetry._metrics import HTTP_CLIENT_ACTIVE, HTTP_CLIENT_DURATION, normalize_method
from telemetry._server_span import ServerSpan, ServerSpans

# Set by callers in request.extensions to name the span by template, not raw URL.
URL_TEMPLATE_EXTENSION = "url_template"
RESEND_COUNT_EXTENSION = "resend_count"
TRACER_NAME = "telemetry.client"


class _Answer(Protocol):
    status_code: int


_R = TypeVar("_R", bound=_Answer)


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
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
        # The SDK's spans without its costs when that is exactly equivalent
        # (telemetry/_server_span.py): about 20 µs a call less.
        self._spans = ServerSpans.for_tracer(self._tracer, TRACER_NAME)
        self._active = HTTP_CLIENT_ACTIVE.labels(peer_service)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        extensions = request.extensions
        return await self.traced(
            request.method,
            url.scheme,
            url.host,
            url.port,
            # Without query and credentials, as the conventions ask; built from
            # the parts because url.copy_with() re-parses the URL (~28 µs).
            f"{url.scheme}://{url.netloc.decode('ascii')}"
            f"{url.raw_path.partition(b'?')[0].decode('ascii')}",
            request.headers,
            partial(self._inner.handle_async_request, request),
            template=extensions.get(URL_TEMPLATE_EXTENSION),
            resend=extensions.get(RESEND_COUNT_EXTENSION),
        )

    async def traced(
        self,
        method: str,
        scheme: str,
        host: str,
        port: int | None,
        url_full: str,
        headers: MutableMapping[str, str],
        send: Callable[[], Awaitable[_R]],
        *,
        template: str | None = None,
        resend: int | None = None,
    ) -> _R:
        """``send()`` one request as a CLIENT span, its trace context put in ``headers``.

        What ``handle_async_request`` does for an ``httpx.Request``, for a
        request described by its parts (the gateway's relay sends without
        httpx's models): ``url_full`` without query and credentials, ``send``'s
        result has a ``status_code``.
        """
        method = normalize_method(method)
        name = "HTTP" if method == "_OTHER" else method
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "server.address": host,
            "server.port": port or (443 if scheme == "https" else 80),
            "url.full": url_full,
            "peer.service": self.peer_service,
        }
        if template:
            attributes["url.template"] = template
            name = f"{name} {template}"
        if resend:
            attributes["http.request.resend_count"] = resend
        span: trace.Span
        if self._spans is not None:
            parent = otel_context.get_current()
            span = self._spans.span(name, parent, SpanKind.CLIENT)
            if isinstance(span, ServerSpan):
                span.start(attributes, parent)
        else:
            span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        ctx = trace.set_span_in_context(span)
        propagate.inject(headers, context=ctx)
        request_id = current_request_id()
        if request_id and "x-request-id" not in headers:
            headers["x-request-id"] = request_id

        self._active.inc()
        start = time.perf_counter()
        status = ""
        error_type = ""
        try:
            response = await send()
        except BaseException as exc:
            error_type = type(exc).__qualname__
            span.record_exception(exc)
            raise
        else:
            code = response.status_code
            status = str(code)
            if code >= 500:
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
            child = HTTP_CLIENT_DURATION.labels(host, self.peer_service, method, status, error_type)
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
