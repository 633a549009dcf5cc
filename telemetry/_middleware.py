"""One ASGI middleware for the server side of a request: span, RED metrics, access log.

Why hand-written rather than Litestar's OpenTelemetry and Prometheus plugins
(measured, see benchmarks/instrumentation_overhead.py):

* the stock OpenTelemetry plugin (opentelemetry-instrumentation-asgi) makes
  three spans per request (two for ASGI send/receive) and names them by raw path;
* Litestar's Prometheus middleware is route-level, so it never sees 404/405,
  records a 401 raised by an inner middleware as 200 with duration 0
  (litestar issue 4747) and labels by raw path unless ``group_path=True``;
* doing all three in one pass over the request costs less than either plugin.

The middleware wraps Litestar's exception-handled router (the place Litestar
itself puts its OpenTelemetry middleware), so every response is seen, including
those of the router's own 404/405 errors.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from telemetry._logging import REQUEST_ID, access_log
from telemetry._metrics import normalize_method
from telemetry._red import EXEMPLAR_ATTRIBUTE, SERVER_RED
from telemetry._server_span import ServerSpan, ServerSpans

ASGIApp = Callable[..., Any]

UNMATCHED_ROUTE = "unmatched"
TRACER_NAME = "telemetry.server"
REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID_ATTRIBUTE = "redline.request_id"
_random_bits = random.getrandbits
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_PROPAGATION_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
# Whether a request's own trace context may be this service's parent (None: always).
ContextTrust = Callable[[dict[str, Any]], bool]
# What the link to an untrusted caller's span says it is.
UNTRUSTED_LINK_ATTRIBUTES: dict[str, AttributeValue] = {"redline.link.reason": "untrusted_parent"}


def valid_request_id(value: str | None) -> str:
    """Forward a caller's id when it is safe to log; otherwise mint one.

    Minted from the PRNG, not os.urandom: an id needs uniqueness, not secrecy,
    and the getrandom() system call showed up in the server's profile.
    """
    if value and _REQUEST_ID_OK.match(value):
        return value
    return f"{_random_bits(128):032x}"


def _request_attributes(
    scope: dict[str, Any],
    method: str,
    raw_method: str,
    host: str,
    client: tuple[str, int] | None,
    user_agent: str,
    request_id: str,
) -> dict[str, AttributeValue]:
    """The server span's semantic-convention attributes known before the app runs.

    Plus ``redline.request_id``, the id every log line and problem carries, so a
    developer holding one finds the trace (Jaeger's tag search, `redline trace`).
    """
    attributes: dict[str, AttributeValue] = {
        "http.request.method": method,
        REQUEST_ID_ATTRIBUTE: request_id,
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if method == "_OTHER":
        attributes["http.request.method_original"] = raw_method
    if host:
        hostname, _, port = host.rpartition(":") if ":" in host else (host, "", "")
        attributes["server.address"] = hostname or host
        if port.isdigit():
            attributes["server.port"] = int(port)
    if client:
        attributes["client.address"] = client[0]
    if user_agent:
        attributes["user_agent.original"] = user_agent
    return attributes


def _untrusted(carrier: dict[str, str]) -> trace.SpanContext | None:
    """The span context of an untrusted caller, for a link; its baggage and trace state dropped."""
    traceparent = carrier.get("traceparent")
    if traceparent is None:
        return None
    incoming = trace.get_current_span(propagate.extract({"traceparent": traceparent}))
    ctx = incoming.get_span_context()
    return ctx if ctx.is_valid else None


class TelemetryMiddleware:
    """The server side of each request.

    ``trust`` decides whether a request's ``traceparent``, ``tracestate`` and
    ``baggage`` are the service's to continue. At a public edge they are not,
    as the OpenTelemetry specification advises for public endpoints: the
    request then starts a new trace under the service's own sampler (so a
    client cannot force sampling with the sampled flag), its span links to the
    client's span context when one was sent, and the client's baggage and trace
    state are dropped, never propagated to the services behind the edge.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        excluded_paths: Collection[str],
        trust: ContextTrust | None = None,
    ) -> None:
        self.app = app
        self._excluded = frozenset(excluded_paths)
        self._trust = trust
        # Both built at start-up, after the plugin configured tracing and
        # logging: a tracer fetched at import time would be a proxy (~1 µs per
        # span), a logger fetched then would not write JSON.
        self._tracer = trace.get_tracer(TRACER_NAME)
        # None when the SDK must make every span (see telemetry/_server_span.py).
        self._spans = ServerSpans.for_tracer(self._tracer, TRACER_NAME)
        self._access_log = access_log()
        self._red = SERVER_RED

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self._excluded:
            await self.app(scope, receive, send)
            return

        start = time.perf_counter()
        raw_method: str = scope["method"]
        method = normalize_method(raw_method)

        carrier: dict[str, str] | None = None
        request_id = user_agent = host = ""
        for name, value in scope["headers"]:
            if name in _PROPAGATION_HEADERS:
                if carrier is None:
                    carrier = {}
                carrier[name.decode()] = value.decode("latin-1")
            elif name == REQUEST_ID_HEADER:
                request_id = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
        request_id = valid_request_id(request_id)

        link: trace.SpanContext | None = None
        if carrier is not None and self._trust is not None and not self._trust(scope):
            link, carrier = _untrusted(carrier), None
        parent = propagate.extract(carrier) if carrier else None
        span_name = "HTTP" if method == "_OTHER" else method
        client = scope.get("client")
        span: trace.Span
        if self._spans is not None:
            span = self._spans.span(span_name, parent)
            # Attributes only for a span that records them (one in ten at 10 %).
            if isinstance(span, ServerSpan):
                span.start(
                    _request_attributes(
                        scope, method, raw_method, host, client, user_agent, request_id
                    ),
                    parent,
                )
                if link is not None:
                    span.add_link(link, UNTRUSTED_LINK_ATTRIBUTES)
        else:
            # Given at creation, as the semantic conventions ask, so a sampler can read them.
            span = self._tracer.start_span(
                span_name,
                # An empty context, not None: None would mean "the current one".
                context=parent if parent is not None else otel_context.Context(),
                kind=SpanKind.SERVER,
                attributes=_request_attributes(
                    scope, method, raw_method, host, client, user_agent, request_id
                ),
                links=[Link(link, UNTRUSTED_LINK_ATTRIBUTES)] if link is not None else None,
            )
        recording = span.is_recording()
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        request_id_token = REQUEST_ID.set(request_id)
        active = self._red.active
        active[method] = active.get(method, 0) + 1

        status = 500
        rid_bytes = request_id.encode()

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers")
                if type(headers) is list:  # Litestar builds a fresh list per response
                    headers.append((REQUEST_ID_HEADER, rid_bytes))
                else:
                    message["headers"] = [*(headers or ()), (REQUEST_ID_HEADER, rid_bytes)]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            status = 500
            span.record_exception(exc)
            raise
        finally:
            duration = time.perf_counter() - start
            route: str = scope.get("path_template") or ""
            route_label = route or UNMATCHED_ROUTE
            ctx = span.get_span_context()
            series = self._red.duration(method, route_label, status)
            # An exemplar only for a sampled trace, and then the trace store is
            # told to keep it (see telemetry/_red.py).
            if ctx.trace_flags.sampled:
                took_exemplar = series.observe(duration, ctx.trace_id, ctx.span_id)
            else:
                took_exemplar = series.observe(duration)
            if recording:
                if route:
                    span.update_name(f"{span_name} {route}")
                    span.set_attributes({"http.route": route, "http.response.status_code": status})
                else:
                    span.set_attribute("http.response.status_code", status)
                # The error handler may have named the error already (a problem
                # type, with a description): keep that, it says more than "503".
                if status >= 500 and "error.type" not in getattr(span, "attributes", {}):
                    span.set_attribute("error.type", str(status))
                    span.set_status(Status(StatusCode.ERROR))
                if took_exemplar:
                    span.set_attribute(EXEMPLAR_ATTRIBUTE, True)
            span.end()

            active[method] -= 1
            self._access_log.write(
                raw_method,
                route_label,
                scope["path"],
                status,
                round(duration * 1e6) / 1000,  # ms to the µs; round(x, 3) costs 3× more
                f"{client[0]}:{client[1]}" if client else None,
                request_id,
                ctx.trace_id,
                ctx.span_id,
            )
            REQUEST_ID.reset(request_id_token)
            otel_context.detach(token)
