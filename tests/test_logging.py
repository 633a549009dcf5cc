"""The JSON log pipeline in-process: request ids, trace ids, redaction, the access line's shape."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext

from telemetry import configure_logging, current_request_id, get_logger
from telemetry._logging import REQUEST_ID, access_log

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331


class Lines(io.BytesIO):
    def parsed(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.getvalue().splitlines()]


@pytest.fixture
def lines() -> Iterator[Lines]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = Lines()
    configure_logging(static_fields={"service": "test", "instance": "i-1"}, stream=out)
    yield out
    structlog.reset_defaults()
    root.handlers[:], level = saved
    root.setLevel(level)


def _in_request(request_id: str) -> tuple[object, object]:
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, is_remote=False))
    return REQUEST_ID.set(request_id), otel_context.attach(trace.set_span_in_context(span))


def test_lines_inside_a_request_carry_its_request_and_trace_ids(lines: Lines) -> None:
    log = get_logger("orders")
    log.info("before")
    rid_token, ctx_token = _in_request("req-1")
    try:
        assert current_request_id() == "req-1"
        log.info("inside", order_id=7)
        logging.getLogger("asyncpg").warning("from the standard library")
        log.info("explicit", request_id="given")
    finally:
        otel_context.detach(ctx_token)  # type: ignore[arg-type]
        REQUEST_ID.reset(rid_token)  # type: ignore[arg-type]
    log.info("after")
    assert current_request_id() is None

    before, inside, stdlib, explicit, after = lines.parsed()
    assert "request_id" not in before
    assert "trace_id" not in before
    for line in (inside, stdlib):
        assert line["request_id"] == "req-1"
        assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
        assert line["span_id"] == "b7ad6b7169203331"
        assert line["service"] == "test"
    assert inside["order_id"] == 7
    assert inside["logger"] == "orders"
    assert stdlib["logger"] == "asyncpg"
    assert stdlib["level"] == "warning"
    assert explicit["request_id"] == "given", "a field the caller set wins"
    assert "request_id" not in after


def test_secrets_are_redacted_at_any_depth(lines: Lines) -> None:
    get_logger("gateway").info(
        "call",
        password="hunter2",
        headers=[("Authorization", "Bearer abc"), ("Accept", "*/*")],
        body={"user": "ann", "refresh_token": "r-1", "nested": {"X-Api-Key": "k"}},
    )
    (line,) = lines.parsed()
    assert line["password"] == "[REDACTED]"
    assert line["headers"] == [["Authorization", "[REDACTED]"], ["Accept", "*/*"]]
    assert line["body"] == {
        "user": "ann",
        "refresh_token": "[REDACTED]",
        "nested": {"X-Api-Key": "[REDACTED]"},
    }
    assert b"hunter2" not in lines.getvalue()
    assert b"abc" not in lines.getvalue()


def test_the_access_line_has_the_shape_of_every_other_line(lines: Lines) -> None:
    get_logger("orders").info("request")
    access_log().write(
        "GET", "/orders/{id}", "/orders/1", 200, 1.234, "127.0.0.1:5000", "req-2", TRACE_ID, SPAN_ID
    )
    access_log().write("GET", "unmatched", "/nope", 404, 0.1, None, "req-3", 0, 0)
    pipeline, access, untraced = lines.parsed()
    assert set(pipeline) - {"event", "logger"} <= set(access)
    assert access == {
        "timestamp": access["timestamp"],
        "logger": "access",
        "event": "request",
        "level": "info",
        "method": "GET",
        "route": "/orders/{id}",
        "path": "/orders/1",
        "status": 200,
        "duration_ms": 1.234,
        "client": "127.0.0.1:5000",
        "request_id": "req-2",
        "service": "test",
        "instance": "i-1",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
    }
    assert access["timestamp"].endswith("Z")
    assert len(access["timestamp"]) == 27
    assert "trace_id" not in untraced
    assert untraced["client"] is None


def test_the_access_line_is_off_above_info(lines: Lines) -> None:
    configure_logging(level="WARNING", stream=lines)
    access_log().write("GET", "/x", "/x", 200, 1.0, None, "r", 0, 0)
    assert lines.getvalue() == b""
