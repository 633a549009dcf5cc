"""The resilient client's aiohttp transport, against real sockets on loopback.

Each server here is a few lines of asyncio that behave exactly as the case
needs: answer, close without answering, reset, stall, send half a body. The
point is the mapping to httpx's errors: the resilient client decides from
them whether a request may have reached the service (refund a charge) or
certainly did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from services.chassis.aiohttp_transport import AiohttpTransport
from services.chassis.http_client import DependencyConfig, Downstream, DownstreamUnavailable
from services.chassis.resilience import Retrier

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Seen"], Awaitable[None]]


@dataclass
class Seen:
    connections: int = 0
    requests: list[tuple[str, str, list[tuple[str, str]], bytes]] = field(default_factory=list)


async def read_request(
    reader: asyncio.StreamReader, seen: Seen
) -> tuple[str, str, list[tuple[str, str]], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, target, _ = head[0].split(" ", 2)
    headers = [
        (k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in head[1:] if h)
    ]
    length = int(dict(headers).get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    seen.requests.append((method, target, headers, body))
    return method, target, headers, body


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await handler(reader, writer, seen)
        writer.close()

    srv = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        srv.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(srv.wait_closed(), 2)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
    """Answer every request on the connection (keep-alive) with what it got."""
    while True:
        try:
            method, target, headers, body = await read_request(reader, seen)
        except asyncio.IncompleteReadError:
            return
        payload = json.dumps(
            {"method": method, "target": target, "headers": headers, "body": body.decode()}
        ).encode()
        writer.write(
            b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
            b"set-cookie: a=1\r\nset-cookie: b=2\r\n"
            + f"content-length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()


def timeouts(seconds: float) -> dict[str, dict[str, float]]:
    return {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), seconds)}


async def send(
    transport: AiohttpTransport, method: str, url: str, timeout: float = 5, **kw: object
) -> httpx.Response:
    request = httpx.Request(method, url, extensions=timeouts(timeout), **kw)  # type: ignore[arg-type]
    return await transport.handle_async_request(request)


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    t = AiohttpTransport(max_connections=4)
    yield t
    await t.aclose()


async def test_a_request_arrives_as_sent_and_the_answer_comes_back_whole(
    transport: AiohttpTransport,
) -> None:
    async with server(echo) as (url, _):
        response = await send(
            transport,
            "POST",
            f"{url}/orders/7",
            params={"q": "a b&c", "n": "1"},
            headers={
                "x-request-id": "r-1",
                "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
            },
            json={"items": [1, 2]},
        )
    assert response.status_code == 201
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    got = response.json()
    assert got["method"] == "POST"
    assert got["target"] == "/orders/7?q=a+b%26c&n=1"
    assert json.loads(got["body"]) == {"items": [1, 2]}
    headers = dict(got["headers"])
    assert headers["x-request-id"] == "r-1"
    assert headers["traceparent"].startswith("00-111")
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(got["body"]))
    # One framing header, from aiohttp, never a second one copied from httpx.
    assert [k for k, _ in got["headers"]].count("content-length") == 1


async def test_keep_alive_one_connection_serves_sequential_requests(
    transport: AiohttpTransport,
) -> None:
    async with server(echo) as (url, seen):
        for i in range(5):
            assert (await send(transport, "GET", f"{url}/products/{i}")).status_code == 201
    assert (seen.connections, len(seen.requests)) == (1, 5)


def closed_port() -> int:
    """A port that was free a moment ago: nothing listens on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_a_refused_connection_is_a_connect_error(transport: AiohttpTransport) -> None:
    with pytest.raises(httpx.ConnectError):
        await send(transport, "GET", f"http://127.0.0.1:{closed_port()}/")


async def _close_after_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    await read_request(reader, seen)


async def test_a_close_without_an_answer_is_a_protocol_error_and_is_not_resent(
    transport: AiohttpTransport,
) -> None:
    async with server(_close_after_request) as (url, seen):
        with pytest.raises(httpx.RemoteProtocolError):
            await send(transport, "GET", f"{url}/products/1")
    # aiohttp would resend an idempotent request once on its own; retries are
    # the resilient client's to count and trace, so exactly one went out.
    assert len(seen.requests) == 1


async def _reset_after_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    await read_request(reader, seen)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # RST, not FIN


async def test_a_reset_after_the_request_is_a_read_error(transport: AiohttpTransport) -> None:
    async with server(_reset_after_request) as (url, seen):
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await send(transport, "POST", f"{url}/charges", json={})
    assert len(seen.requests) == 1


async def _half_a_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    await read_request(reader, seen)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
    await writer.drain()


async def test_a_truncated_body_is_a_protocol_error(transport: AiohttpTransport) -> None:
    async with server(_half_a_body) as (url, _):
        with pytest.raises(httpx.RemoteProtocolError):
            await send(transport, "GET", f"{url}/products/1")


async def _never_answer(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    await read_request(reader, seen)
    await reader.read()  # until the client gives up and closes


async def test_no_answer_within_the_timeout_is_a_read_timeout(transport: AiohttpTransport) -> None:
    async with server(_never_answer) as (url, _):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await send(transport, "GET", f"{url}/slow", timeout=0.3)
        assert 0.25 <= loop.time() - started < 2


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
    await read_request(reader, seen)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
    for _ in range(1000):  # a byte every 50 ms: no single read ever times out
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.05)


async def test_an_answer_trickling_in_still_ends_at_the_timeout(
    transport: AiohttpTransport,
) -> None:
    async with server(_trickle) as (url, _):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpx.ReadTimeout):
            await send(transport, "GET", f"{url}/slow", timeout=0.5)
        assert loop.time() - started < 2


async def test_waiting_for_a_pooled_connection_past_the_timeout_is_a_connect_timeout() -> None:
    one = AiohttpTransport(max_connections=1)
    try:
        async with server(_never_answer) as (url, seen):
            holder = asyncio.create_task(send(one, "GET", f"{url}/slow", timeout=5))
            while not seen.requests:  # the only connection is now taken
                await asyncio.sleep(0.01)
            with pytest.raises(httpx.ConnectTimeout):
                await send(one, "POST", f"{url}/charges", timeout=0.2, json={})
            assert len(seen.requests) == 1  # the second never left
            holder.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await holder
    finally:
        await one.aclose()


# The resilient client on top: what the mapping is for.


def _downstream(url: str) -> Downstream:
    return Downstream(
        DependencyConfig(name="payments", base_url=url, timeout=1.0, max_concurrent=2)
    )


async def test_a_post_whose_answer_was_lost_may_have_been_delivered() -> None:
    async with server(_close_after_request) as (url, seen):
        downstream = _downstream(url)
        try:
            with pytest.raises(DownstreamUnavailable) as caught:
                await downstream.request("POST", "/charges", json={"cents": 100})
        finally:
            await downstream.aclose()
    assert caught.value.maybe_delivered is True
    assert len(seen.requests) == 1  # not idempotent: never retried


async def _unavailable_then_ok(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    """The first request on the server gets a 503, every later one a 200 (keep-alive)."""
    while True:
        try:
            await read_request(reader, seen)
        except asyncio.IncompleteReadError:
            return
        status = b"503 Service Unavailable" if len(seen.requests) == 1 else b"200 OK"
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()


def _observe_backoff(downstream: Downstream, during_sleep: Callable[[], None]) -> None:
    """Give the downstream a retrier that calls ``during_sleep`` instead of sleeping."""

    async def sleep(_: float) -> None:
        during_sleep()

    downstream.retrier = Retrier(downstream.name, downstream.config.retry, sleep=sleep)


@pytest.mark.parametrize("path", ["request", "relay"])
async def test_the_breaker_judges_the_call_and_its_slot_is_held_through_the_backoff(
    path: str,
) -> None:
    in_flight_while_sleeping: list[int] = []
    async with server(_unavailable_then_ok) as (url, seen):
        downstream = _downstream(url)
        _observe_backoff(
            downstream,
            lambda: in_flight_while_sleeping.append(downstream.bulkhead.snapshot().in_flight),
        )
        call = downstream.request if path == "request" else downstream.relay
        try:
            response = await call("GET", "/charges/7")
        finally:
            await downstream.aclose()
    assert response.status_code == 200
    assert len(seen.requests) == 2
    # The call keeps its slot while it waits to try again.
    assert in_flight_while_sleeping == [1]
    breaker = downstream.breaker.snapshot()
    # What the caller got is what the breaker counts: one call, a success.
    assert (breaker.failures_total, breaker.successes_total) == (0, 1)


async def test_an_open_breaker_costs_no_attempt() -> None:
    async with server(_unavailable_then_ok) as (url, seen):
        downstream = _downstream(url)
        downstream.breaker.force_open()
        try:
            with pytest.raises(DownstreamUnavailable) as caught:
                await downstream.request("POST", "/charges", headers={"idempotency-key": "o-7"})
        finally:
            await downstream.aclose()
    assert caught.value.extensions["reason"] == "circuit_open"
    assert caught.value.maybe_delivered is False
    assert seen.requests == []
    assert sum(downstream.retrier.snapshot().attempts_total.values()) == 0


async def test_a_post_that_never_connected_was_not_delivered() -> None:
    downstream = _downstream(f"http://127.0.0.1:{closed_port()}")
    try:
        with pytest.raises(DownstreamUnavailable) as caught:
            await downstream.request("POST", "/charges", json={"cents": 100})
    finally:
        await downstream.aclose()
    assert caught.value.maybe_delivered is False


async def test_the_downstream_joins_base_url_path_and_params() -> None:
    async with server(echo) as (url, _):
        downstream = _downstream(url + "/")
        try:
            response = await downstream.request("GET", "/products/3", params={"ids": "1,2"})
        finally:
            await downstream.aclose()
    assert response.json()["target"] == "/products/3?ids=1%2C2"


async def test_each_attempt_is_a_client_span_whose_context_the_server_receives() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from telemetry import InstrumentedTransport

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    transport = InstrumentedTransport(
        AiohttpTransport(max_connections=2), peer_service="inventory", tracer_provider=provider
    )
    try:
        async with server(echo) as (url, seen):
            host_port = url.removeprefix("http://")
            request = httpx.Request(
                "GET",
                f"http://user:secret@{host_port}/products/7?token=abc",
                extensions={**timeouts(5), "url_template": "/products/{id}"},
            )
            response = await transport.handle_async_request(request)
    finally:
        await transport.aclose()
    (span,) = memory.get_finished_spans()
    assert span.name == "GET /products/{id}"
    assert span.kind is SpanKind.CLIENT
    host, port = host_port.split(":")
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "server.address": host,
        "server.port": int(port),
        # Neither the query nor the credentials.
        "url.full": f"http://{host_port}/products/7",
        "url.template": "/products/{id}",
        "peer.service": "inventory",
        "http.response.status_code": 201,
    }
    received = dict(seen.requests[0][2])
    assert received["traceparent"] == (
        f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-"
        f"{int(span.context.trace_flags):02x}"
    )
    assert response.status_code == 201
