"""Structured JSON logs: one structlog processor pipeline owned by this library.

Every line is one JSON object on stdout. Lines written while a span is current
carry ``trace_id`` and ``span_id`` as lower-case hex, the form Jaeger and the
W3C ``traceparent`` header use, so a log line can be pasted into Jaeger's
search. Standard-library loggers (uvicorn, asyncpg, the OpenTelemetry SDK) go
through the same processors, so a service never configures logging itself.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from structlog._config import BoundLoggerLazyProxy
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"

# The id of the request being served, set by the server middleware. Its own
# ContextVar rather than structlog's bind_contextvars: setting and resetting
# that per request cost ~7,600 instructions, this ~1,000
# (benchmarks/instruction_counts.py). Services still bind their own fields
# with structlog; every line gets this one from add_request_id.
REQUEST_ID: ContextVar[str | None] = ContextVar("redline_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    return REQUEST_ID.get()


def add_request_id(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    request_id = REQUEST_ID.get()
    if request_id is not None and "request_id" not in event_dict:
        event_dict["request_id"] = request_id
    return event_dict


# Keys whose values are never written, at any depth. Matched on the lower-cased
# key with "-" read as "_", so "Authorization", "X-Api-Key" and "access_token" all hit.
SECRET_KEYS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "password",
        "new_password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "x_api_key",
        "admin_token",
        "jwt",
    }
)


_secret_cache: dict[str, bool] = {}


def _is_secret(key: str) -> bool:
    # Called for every key of every line: memoised (keys are few and come from code).
    hit = _secret_cache.get(key)
    if hit is None:
        k = key.lower().replace("-", "_")
        hit = k in SECRET_KEYS or k.endswith(("_password", "_secret", "_token"))
        if len(_secret_cache) < 4096:
            _secret_cache[key] = hit
    return hit


_CONTAINERS = (dict, list, tuple)


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: (REDACTED if _is_secret(str(k)) else _redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        # Header lists arrive as (name, value) pairs.
        out = []
        for item in value:
            if (
                isinstance(item, tuple | list)
                and len(item) == 2
                and isinstance(item[0], str | bytes)
                and _is_secret(item[0].decode() if isinstance(item[0], bytes) else item[0])
            ):
                out.append((item[0], REDACTED))
            else:
                out.append(_redact(item))
        return out
    return value


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Replace the values of secret-looking keys, including nested dicts and header lists."""
    cache = _secret_cache
    for key, value in event_dict.items():
        secret = cache.get(key)
        if secret is None:
            secret = _is_secret(key)
        if secret:
            event_dict[key] = REDACTED
        elif type(value) in _CONTAINERS:
            event_dict[key] = _redact(value)
    return event_dict


def add_trace_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Add the current span's ids in the hex form Jaeger shows."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.trace_id:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


_LEVELS = {"warn": "warning", "exception": "error", "msg": "info"}


class Stamp:
    """Level, UTC timestamp, static fields and trace ids, in one pass.

    One processor instead of four because it runs for every access line; the
    timestamp reuses the formatted second and only appends microseconds.
    """

    def __init__(self, fields: Mapping[str, str]) -> None:
        self.fields = tuple(fields.items())
        self._second = -1
        self._prefix = ""

    def timestamp(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((now - second) * 1e6):06d}Z"

    def stamp(self, event_dict: EventDict, level: str) -> EventDict:
        event_dict["level"] = level
        event_dict["timestamp"] = self.timestamp()
        for key, value in self.fields:
            if key not in event_dict:
                event_dict[key] = value
        return event_dict

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        self.stamp(event_dict, _LEVELS.get(method_name, method_name))
        return add_trace_context(logger, method_name, event_dict)


class AccessLog:
    """The one line per request, in exactly the shape of every other line.

    Rendered by the pipeline's own ``Stamp`` and JSON encoder but without
    structlog's per-call machinery (context copy, contextvar merge, redaction
    of fields that are never secret), building the line's dict once in its
    final key order: 7.8 µs per line through a bound structlog logger,
    2.8 µs here (benchmarks/log_line.py).
    """

    def __init__(self, stamp: Stamp, out: Any, enabled: bool) -> None:
        self._stamp = stamp
        self._static = dict(stamp.fields)
        self._write = out.write
        self._flush = out.flush
        self.enabled = enabled

    def write(
        self,
        method: str,
        route: str,
        path: str,
        status: int,
        duration_ms: float,
        client: str | None,
        request_id: str,
        trace_id: int,
        span_id: int,
    ) -> None:
        if not self.enabled:
            return
        event: dict[str, Any] = {
            "logger": "access",
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "client": client,
            "request_id": request_id,
            "event": "request",
            "level": "info",
            "timestamp": self._stamp.timestamp(),
            **self._static,
        }
        if trace_id:
            event["trace_id"] = format(trace_id, "032x")
            event["span_id"] = format(span_id, "016x")
        self._write(orjson.dumps(event, default=str, option=orjson.OPT_APPEND_NEWLINE))
        self._flush()


class FdWriter:
    """Each write goes straight to a file descriptor: one system call per line.

    Log lines must leave the process as they are written (a crash must not
    eat the lines that explain it), so a buffered stream would be flushed
    after every line anyway; writing to the descriptor skips the buffer's
    copy and lock. A line is one write() call, so lines from different
    threads never interleave (pipes keep writes up to 4 KiB whole).
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def write(self, data: bytes) -> int:
        written = os.write(self._fd, data)
        if written < len(data):  # a full pipe takes part of a line; send the rest
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(self._fd, view) :]
        return len(data)

    def flush(self) -> None:
        pass


_access_log: AccessLog | None = None


def access_log() -> AccessLog:
    """The access logger ``configure_logging`` set up (a disabled one before that)."""
    if _access_log is None:
        return AccessLog(Stamp({}), FdWriter(sys.stdout.fileno()), enabled=False)
    return _access_log


def _orjson_dumps(obj: Any, default: Any = None) -> bytes:
    return orjson.dumps(obj, default=default or str)


def shared_processors(static_fields: Mapping[str, str]) -> list[Processor]:
    """The processors both structlog and stdlib records pass through, in order."""
    return [
        structlog.contextvars.merge_contextvars,
        add_request_id,
        # Before our own fields are added: fewer keys to look at.
        redact_secrets,
        Stamp(static_fields),
    ]


class _StdlibToStructlog(logging.Handler):
    """Hand stdlib records to a structlog logger, so both share one pipeline and one stream."""

    def __init__(self) -> None:
        super().__init__()
        self._logger = structlog.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            kw: MutableMapping[str, Any] = {"logger": record.name}
            if record.exc_info:
                kw["exc_info"] = record.exc_info
            self._logger.log(record.levelno, record.getMessage(), **kw)
        except Exception:  # logging must never take the service down
            self.handleError(record)


def configure_logging(
    *,
    level: str = "INFO",
    static_fields: Mapping[str, str] | None = None,
    stream: Any = None,
    quiet_loggers: Iterable[str] = ("uvicorn.access",),
) -> None:
    """Configure structlog and the stdlib root logger to write JSON lines.

    Idempotent: calling it again replaces the configuration.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    if stream is None:
        sys.stdout.flush()  # anything printed before goes out first
        stream = FdWriter(sys.stdout.fileno())
    out = stream
    processors = shared_processors(static_fields or {})
    global _access_log
    stamp = next(p for p in processors if isinstance(p, Stamp))
    _access_log = AccessLog(stamp, out, enabled=numeric <= logging.INFO)
    structlog.configure(
        processors=[
            *processors,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [_StdlibToStructlog()]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Our middleware writes one access line per request; uvicorn's would double it.
    for name in quiet_loggers:
        logging.getLogger(name).disabled = True
    # httpx.AsyncClient logs every request it sends at INFO, a second line for
    # what the CLIENT span and http_client_* metrics already say (Downstream
    # skips AsyncClient; other httpx clients in a service do not). Its
    # warnings still come through, and all of it at DEBUG.
    logging.getLogger("httpx").setLevel(
        logging.WARNING if numeric > logging.DEBUG else logging.NOTSET
    )


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; ``name`` becomes the ``logger`` field.

    Lazy, so module-level loggers pick up the configuration made later by the
    plugin. (``structlog.get_logger(logger=...)`` cannot be used: ``logger`` is
    a parameter name of ``wrap_logger``.)
    """
    return BoundLoggerLazyProxy(
        None, initial_values={"logger": name} if name else {}, logger_factory_args=()
    )
