"""The gateway's relay client (services/chassis/wire.py), against real sockets on loopback.

The same servers and the same error mapping as the aiohttp transport's tests
(tests/test_aiohttp_transport.py): the resilient client decides from the error
whether a request may have reached the service. Then ``Downstream.relay`` on
top: the guards, the CLIENT span and a lost POST seen through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from services.chassis.http_client import DependencyConfig, Downstream, DownstreamUnavailable
from services.chassis.wire import WireAnswer, WireClient
from tests.test_aiohttp_transport import (
    Seen,
    _close_after_request,
    _half_a_body,
    _never_answer,
    _observe_backoff,
    _reset_after_request,
    _trickle,
    _unavailable_then_ok,
    closed_port,
    echo,
    read_request,
    server,
)


def _split(url: str) -> tuple[str, int]:
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port)


async def send(
    client: WireClient,
    method: str,
    url: str,
    target: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 5,
) -> WireAnswer:
    host, port = _split(url)
    return await client.send(
        method, host, port, target, headers or {}, body, connect=timeout, read=timeout
    )


@pytest.fixture
async def client() -> AsyncIterator[WireClient]:
    c = WireClient(max_connections=4)
    yield c
    await c.aclose()


async def test_a_request_arrives_as_sent_and_the_answer_comes_back_whole(
    client: WireClient,
) -> None:
    async with server(echo) as (url, _):
        answer = await send(
            client,
            "POST",
            url,
            "/orders/7?q=a+b%26c",
            headers={"x-request-id": "r-1", "content-type": "application/json"},
            body=b'{"items": [1, 2]}',
        )
    assert answer.status_code == 201
    assert answer.headers["set-cookie"] == "a=1"  # the first of several
    assert answer.headers["content-type"] == "application/json"
    got = json.loads(answer.content)
    assert (got["method"], got["target"]) == ("POST", "/orders/7?q=a+b%26c")
    assert json.loads(got["body"]) == {"items": [1, 2]}
    headers = dict(got["headers"])
    assert headers["x-request-id"] == "r-1"
    assert headers["host"] == url.removeprefix("http://")
    assert headers["content-length"] == str(len(got["body"]))
    assert [k for k, _ in got["headers"]].count("content-length") == 1


async def test_keep_alive_one_connection_serves_sequential_requests(client: WireClient) -> None:
    async with server(echo) as (url, seen):
        for i in range(5):
            assert (await send(client, "GET", url, f"/products/{i}")).status_code == 201
    assert (seen.connections, len(seen.requests)) == (1, 5)


async def test_an_idle_connection_is_not_reused_past_the_keep_alive() -> None:
    short = WireClient(max_connections=4, keepalive_seconds=0.05)
    try:
        async with server(echo) as (url, seen):
            await send(short, "GET", url, "/products/1")
            await asyncio.sleep(0.1)
            await send(short, "GET", url, "/products/2")
    finally:
        await short.aclose()
    assert (seen.connections, len(seen.requests)) == (2, 2)


async def _answer_and_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    """What a draining server does: answer, say ``Connection: close``, close."""
    await read_request(reader, seen)
    writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
    await writer.drain()


async def test_connection_close_is_honoured(client: WireClient) -> None:
    async with server(_answer_and_close) as (url, seen):
        for _ in range(3):
            answer = await send(client, "GET", url, "/products/1")
            assert (answer.status_code, answer.content) == (200, b"ok")
    assert (seen.connections, len(seen.requests)) == (3, 3)


async def _chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
    await read_request(reader, seen)
    writer.write(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    await writer.drain()
    await reader.read()


async def test_a_chunked_answer_is_read_whole(client: WireClient) -> None:
    async with server(_chunked) as (url, _):
        answer = await send(client, "GET", url, "/products/1")
    assert answer.content == b"hello world"


async def test_a_refused_connection_is_a_connect_error(client: WireClient) -> None:
    with pytest.raises(httpx.ConnectError):
        await send(client, "GET", f"http://127.0.0.1:{closed_port()}", "/")


async def test_a_close_without_an_answer_is_a_protocol_error_and_is_not_resent(
    client: WireClient,
) -> None:
    async with server(_close_after_request) as (url, seen):
        with pytest.raises(httpx.RemoteProtocolError):
            await send(client, "GET", url, "/products/1")
    assert len(seen.requests) == 1


async def test_a_reset_after_the_request_is_a_read_error(client: WireClient) -> None:
    async with server(_reset_after_request) as (url, seen):
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await send(client, "POST", url, "/charges", body=b"{}")
    assert len(seen.requests) == 1


async def test_a_truncated_body_is_a_protocol_error(client: WireClient) -> None:
    async with server(_half_a_body) as (url, _):
        with pytest.raises(httpx.RemoteProtocolError):
            await send(client, "GET", url, "/products/1")


async def test_no_answer_within_the_timeout_is_a_read_timeout(client: WireClient) -> None:
    async with server(_never_answer) as (url, _):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await send(client, "GET", url, "/slow", timeout=0.3)
        assert 0.25 <= loop.time() - started < 2


async def test_an_answer_trickling_in_still_ends_at_the_timeout(client: WireClient) -> None:
    async with server(_trickle) as (url, _):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await send(client, "GET", url, "/slow", timeout=0.5)
        assert loop.time() - started < 2


async def test_waiting_for_a_pooled_connection_past_the_timeout_is_a_connect_timeout() -> None:
    one = WireClient(max_connections=1)
    try:
        async with server(_never_answer) as (url, seen):
            holder = asyncio.create_task(send(one, "GET", url, "/slow", timeout=5))
            while not seen.requests:  # the only connection is now taken
                await asyncio.sleep(0.01)
            with pytest.raises(httpx.ConnectTimeout):
                await send(one, "POST", url, "/charges", timeout=0.2, body=b"{}")
            assert len(seen.requests) == 1  # the second never left
            holder.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await holder
            # The cancelled call gave its connection back: the pool is usable again.
            assert one._open == 0
    finally:
        await one.aclose()


async def test_a_header_with_a_line_break_is_refused(client: WireClient) -> None:
    with pytest.raises(ValueError, match="line break"):
        await send(client, "GET", "http://127.0.0.1:1", "/", headers={"x-a": "1\r\nx-b: 2"})


# Downstream.relay: the resilient client on top.


def _downstream(url: str) -> Downstream:
    return Downstream(
        DependencyConfig(name="payments", base_url=url, timeout=1.0, max_concurrent=2)
    )


async def test_relay_joins_base_url_path_and_params() -> None:
    async with server(echo) as (url, seen):
        downstream = _downstream(url + "/")
        try:
            answer = await downstream.relay("GET", "/products/3", params={"ids": "1,2"})
        finally:
            await downstream.aclose()
    assert json.loads(answer.content)["target"] == "/products/3?ids=1%2C2"
    headers = dict(seen.requests[0][2])
    assert headers["accept-encoding"] == "identity"


async def test_relay_a_post_whose_answer_was_lost_may_have_been_delivered() -> None:
    async with server(_close_after_request) as (url, seen):
        downstream = _downstream(url)
        try:
            with pytest.raises(DownstreamUnavailable) as caught:
                await downstream.relay("POST", "/charges", content=b"{}")
        finally:
            await downstream.aclose()
    assert caught.value.maybe_delivered is True
    assert len(seen.requests) == 1  # not idempotent: never retried


async def test_relay_a_post_that_never_connected_was_not_delivered() -> None:
    downstream = _downstream(f"http://127.0.0.1:{closed_port()}")
    try:
        with pytest.raises(DownstreamUnavailable) as caught:
            await downstream.relay("POST", "/charges", content=b"{}")
    finally:
        await downstream.aclose()
    assert caught.value.maybe_delivered is False


async def test_each_relayed_attempt_is_a_client_span_whose_context_the_server_receives() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from telemetry import InstrumentedTransport

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    async with server(_unavailable_then_ok) as (url, seen):
        downstream = _downstream(url)
        _observe_backoff(downstream, lambda: None)
        downstream._transport = InstrumentedTransport(
            downstream._wire, peer_service="payments", tracer_provider=provider
        )
        try:
            await downstream.relay("GET", "/charges/7", url_template="/charges/{id}")
        finally:
            await downstream.aclose()
    first, second = memory.get_finished_spans()
    host, port = url.removeprefix("http://").split(":")
    for span, status in ((first, 503), (second, 200)):
        assert span.name == "GET /charges/{id}"
        assert span.kind is SpanKind.CLIENT
        assert span.attributes is not None
        assert span.attributes["url.full"] == f"{url}/charges/7"
        assert span.attributes["server.address"] == host
        assert span.attributes["server.port"] == int(port)
        assert span.attributes["peer.service"] == "payments"
        assert span.attributes["http.response.status_code"] == status
    assert first.attributes is not None
    assert second.attributes is not None
    assert "http.request.resend_count" not in first.attributes
    assert second.attributes["http.request.resend_count"] == 1
    for (_, _, headers, _), span in zip(seen.requests, (first, second), strict=True):
        assert span.context is not None
        assert dict(headers)["traceparent"] == (
            f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-"
            f"{int(span.context.trace_flags):02x}"
        )
