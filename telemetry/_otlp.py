"""A fast OTLP/HTTP span exporter: same wire bytes' meaning, an eighth of the CPU.

The stock exporter builds one protobuf object per span, attribute and value
and then serialises them: about 41 µs per span on the reference machine, on
the same core that serves requests (benchmarks/otlp_encoding.py). This module
writes the protobuf wire format directly, caching the encoded form of
attribute pairs that repeat (``http.request.method=GET``) and of the resource
and scope, for about 5 µs per span. tests/test_otlp_encoding.py checks that the
result parses to exactly the message the stock encoder builds.

Only the encoding is replaced: sending, retries, headers, compression, timeout
and every ``OTEL_EXPORTER_OTLP_*`` variable stay with the stock HTTP exporter.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import Counter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

from telemetry._metrics import REGISTRY

_logger = logging.getLogger(__name__)

# The Prometheus form of the semantic-convention SDK metric
# otel.sdk.exporter.span.exported: an alert on error_type != "" tells an SRE
# the traces they are about to look for may not be there.
SPANS_EXPORTED = Counter(
    "otel_sdk_exporter_span_exported",
    "Spans the exporter tried to send, by error type (empty when delivered).",
    ["error_type"],
    registry=REGISTRY,
)
SPANS_EXPORTED.labels("")  # the series exists (at 0) before the first export

_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack

# Span flags (trace.proto): the context's "is remote" bit is known / is set.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 on the wire: two's complement, 10 bytes
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _len_delimited(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _string(field: int, value: str) -> bytes:
    return _len_delimited(field, value.encode("utf-8")) if value else b""


# Field 6; SDK INTERNAL=0 ..., proto UNSPECIFIED=0, INTERNAL=1 ...
_KINDS = {kind: b"\x30" + _varint(kind.value + 1) for kind in SpanKind}
_SERVER_KIND = _KINDS[SpanKind.SERVER]


def _any_value(value: Any) -> bytes:
    """An AnyValue message body. Oneof members are written even when zero-valued."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _len_delimited(1, value.encode("utf-8"))
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return _len_delimited(7, value)
    if isinstance(value, Mapping):
        return _len_delimited(
            6, b"".join(_len_delimited(1, _key_value(str(k), v)) for k, v in value.items())
        )
    if isinstance(value, Sequence):
        return _len_delimited(5, b"".join(_len_delimited(1, _any_value(v)) for v in value))
    raise TypeError(f"unsupported attribute value type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    return _string(1, key) + _len_delimited(2, _any_value(value))


# Keyed by field too: the same pair is field 9 in a span, 3 in an event, 1 in a resource.
_kv_cache: dict[tuple[int, str, type, Any], bytes] = {}
_KV_CACHE_MAX = 4096


def _attributes(field: int, attributes: Mapping[str, Any] | None) -> bytes:
    """Repeated KeyValue ``field``; pairs of hashable scalars are encoded once and cached."""
    if not attributes:
        return b""
    parts = []
    cache = _kv_cache
    # BoundedAttributes iterates through the MutableMapping ABC (a lock and a
    # __getitem__ per key); its plain dict is read directly. The equality test
    # against the stock encoder pins this to the installed SDK's behaviour.
    plain = getattr(attributes, "_dict", attributes)
    for key, value in plain.items():
        t = type(value)
        if t is str or t is int or t is bool:
            ck = (field, key, t, value)
            encoded = cache.get(ck)
            if encoded is None:
                encoded = _len_delimited(field, _key_value(key, value))
                if len(cache) < _KV_CACHE_MAX:
                    cache[ck] = encoded
            parts.append(encoded)
            continue
        try:
            parts.append(_len_delimited(field, _key_value(key, value)))
        except TypeError as exc:  # the stock encoder drops the attribute the same way
            _logger.warning("dropping attribute %s: %s", key, exc)
    return b"".join(parts)


# Field 16 (fixed32) for a local and for a remote parent.
_FLAGS_LOCAL = b"\x85\x01" + _pack_fixed32(_HAS_IS_REMOTE)
_FLAGS_REMOTE = b"\x85\x01" + _pack_fixed32(_HAS_IS_REMOTE | _IS_REMOTE)

# Span names (route templates) and statuses repeat: their encodings are cached.
_name_cache: dict[str, bytes] = {}
_status_cache: dict[tuple[int, str | None], bytes] = {}


def _name(name: str) -> bytes:
    encoded = _name_cache.get(name)
    if encoded is None:
        encoded = _string(5, name)
        if len(_name_cache) < _KV_CACHE_MAX:
            _name_cache[name] = encoded
    return encoded


def _status(code: int, description: str | None) -> bytes:
    key = (code, description)
    encoded = _status_cache.get(key)
    if encoded is None:
        body = _string(2, description or "")
        if code:
            body += b"\x18" + _varint(code)
        encoded = _len_delimited(15, body)
        if len(_status_cache) < _KV_CACHE_MAX:
            _status_cache[key] = encoded
    return encoded


_STATUS_UNSET = _status(0, None)


def encode_span(span: ReadableSpan) -> bytes:
    ctx = span.get_span_context()
    assert ctx is not None
    out = [
        b"\x0a\x10" + ctx.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + ctx.span_id.to_bytes(8, "big"),
    ]
    if ctx.trace_state:
        out.append(_string(3, ctx.trace_state.to_header()))
    parent = span.parent
    if parent is not None:
        out.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    out.append(_name(span.name))
    kind = span.kind  # an enum's hash runs Python code: skip it for the common kind
    out.append(_SERVER_KIND if kind is SpanKind.SERVER else _KINDS[kind])
    if span.start_time:
        out.append(b"\x39" + _pack_fixed64(span.start_time))
    if span.end_time:
        out.append(b"\x41" + _pack_fixed64(span.end_time))
    out.append(_attributes(9, getattr(span, "_attributes", None) or span.attributes))
    if span.dropped_attributes:
        out.append(b"\x50" + _varint(span.dropped_attributes))
    for event in span.events:
        body = b""
        if event.timestamp:
            body += b"\x09" + _pack_fixed64(event.timestamp)
        body += _string(2, event.name) + _attributes(3, event.attributes)
        if event.dropped_attributes:
            body += b"\x20" + _varint(event.dropped_attributes)
        out.append(_len_delimited(11, body))
    if span.dropped_events:
        out.append(b"\x60" + _varint(span.dropped_events))
    for link in span.links:
        lctx = link.context
        body = (
            b"\x0a\x10"
            + lctx.trace_id.to_bytes(16, "big")
            + b"\x12\x08"
            + lctx.span_id.to_bytes(8, "big")
        )
        body += _attributes(4, link.attributes)
        if link.dropped_attributes:
            body += b"\x28" + _varint(link.dropped_attributes)
        body += b"\x35" + _pack_fixed32(_HAS_IS_REMOTE | (_IS_REMOTE if lctx.is_remote else 0))
        out.append(_len_delimited(13, body))
    if span.dropped_links:
        out.append(b"\x70" + _varint(span.dropped_links))
    status = span.status
    if status.status_code is StatusCode.UNSET and not status.description:
        out.append(_STATUS_UNSET)
    else:
        out.append(_status(status.status_code.value, status.description))
    out.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(out)


_header_cache: dict[tuple[int, int], tuple[bytes, bytes, bytes, bytes]] = {}


def _headers(span: ReadableSpan) -> tuple[bytes, bytes, bytes, bytes]:
    """Encoded resource and scope, and the schema-url trailers, per (resource, scope)."""
    resource, scope = span.resource, span.instrumentation_scope
    key = (id(resource), id(scope))
    hit = _header_cache.get(key)
    if hit is None:
        resource_body = _attributes(1, resource.attributes)
        scope_body = b""
        if scope is not None:
            scope_body = _string(1, scope.name) + _string(2, scope.version or "")
            scope_body += _attributes(3, scope.attributes)
        hit = (
            _len_delimited(1, resource_body),
            _len_delimited(1, scope_body),
            _string(3, (scope.schema_url or "") if scope is not None else ""),
            _string(3, resource.schema_url or ""),
        )
        # Resource and scope objects live as long as the provider; keep them
        # alive here too so an id is never reused for another pair.
        _header_cache[key] = hit
        _header_keepalive.append((resource, scope))
    return hit


_header_keepalive: list[tuple[Any, Any]] = []


def encode_export_request(spans: Sequence[ReadableSpan]) -> bytes:
    """An ``ExportTraceServiceRequest``, grouped by resource then scope like the stock encoder."""
    grouped: dict[int, dict[int, list[ReadableSpan]]] = {}
    for span in spans:
        grouped.setdefault(id(span.resource), {}).setdefault(
            id(span.instrumentation_scope), []
        ).append(span)
    out = []
    for by_scope in grouped.values():
        scope_parts = []
        resource_part = resource_schema = b""
        for members in by_scope.values():
            resource_part, scope_part, scope_schema, resource_schema = _headers(members[0])
            body = (
                scope_part
                + b"".join(_len_delimited(2, encode_span(s)) for s in members)
                + scope_schema
            )
            scope_parts.append(_len_delimited(2, body))
        out.append(_len_delimited(1, resource_part + b"".join(scope_parts) + resource_schema))
    return b"".join(out)


# Naming one makes the stock exporter load its own session: then it is left to.
_CREDENTIAL_PROVIDER_VARIABLES = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)


class EnvironmentOnceSession(requests.Session):
    """A requests session that reads proxy and CA-bundle variables once per URL.

    requests scans the whole environment for proxy variables twice on every
    request: about 0.5 ms of every export on a machine with 60 variables,
    more in a container with hundreds. The exporter reads every other setting
    once, at start-up, so these are read once too; what is merged is what
    ``requests.Session.merge_environment_settings`` merges
    (tests/test_otlp_encoding.py compares the two).
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[str, tuple[dict[str, str], str | None]] = {}

    def merge_environment_settings(
        self,
        url: str,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> dict[str, Any]:
        if not self.trust_env or (proxies and "no_proxy" in proxies):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        found = self._environment.get(url)
        if found is None:
            bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            found = self._environment[url] = (get_environ_proxies(url), bundle)
        env_proxies, bundle = found
        if proxies is not None:
            for key, value in env_proxies.items():
                proxies.setdefault(key, value)
        if verify is True or verify is None:
            verify = bundle or verify
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The stock OTLP/HTTP exporter with the hand-written encoder."""

    def __init__(self, **kwargs: Any) -> None:
        if "session" not in kwargs and not any(
            os.environ.get(name) for name in _CREDENTIAL_PROVIDER_VARIABLES
        ):
            kwargs["session"] = EnvironmentOnceSession()
        super().__init__(**kwargs)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            data = encode_export_request(spans)
        except Exception as exc:  # never let telemetry take the service down
            _logger.error("failed to encode %d spans: %s", len(spans), exc)
            SPANS_EXPORTED.labels(type(exc).__name__).inc(len(spans))
            return SpanExportResult.FAILURE
        return self.export_encoded(data, len(spans))

    def export_encoded(self, data: bytes, count: int) -> SpanExportResult:
        """Send ``count`` spans already encoded as an ``ExportTraceServiceRequest``."""
        if self._shutdown:
            return SpanExportResult.FAILURE
        result = self._client.export(data)
        if result.success:
            SPANS_EXPORTED.labels("").inc(count)
            return SpanExportResult.SUCCESS
        error = result.error
        error_type = (
            str(result.status_code)
            if result.status_code is not None
            else type(error).__name__
            if error is not None
            else "unknown"
        )
        SPANS_EXPORTED.labels(error_type).inc(count)
        return SpanExportResult.FAILURE
