"""The fault proxy's toxics against real local TCP servers: an echo server and an HTTP one."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from chaos.proxy import FaultProxy, ProxyClient, ProxyServer, ProxyThread, Toxic, ToxicError


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def tcp_server(handler: Any) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def proxied(handler: Any = _echo, seed: int = 1) -> AsyncIterator[FaultProxy]:
    async with tcp_server(handler) as port:
        proxy = await FaultProxy("dep", ("127.0.0.1", port), rng=random.Random(seed)).start()
        try:
            yield proxy
        finally:
            await proxy.stop()


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def round_trip(proxy: FaultProxy, payload: bytes = b"ping") -> tuple[bytes, float]:
    reader, writer = await connect(proxy)
    t0 = time.monotonic()
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.readexactly(len(payload)), 10)
    elapsed = time.monotonic() - t0
    writer.close()
    return data, elapsed


async def test_without_toxics_bytes_pass_unchanged_both_ways() -> None:
    async with proxied() as proxy:
        payload = bytes(range(256)) * 1000
        data, elapsed = await round_trip(proxy, payload)
    assert data == payload
    assert elapsed < 1.0
    assert proxy.stats.bytes_upstream == proxy.stats.bytes_downstream == len(payload)


async def test_latency_delays_each_answer_by_latency_within_jitter() -> None:
    async with proxied() as proxy:
        proxy.add_toxic(
            Toxic.parse({"type": "latency", "attributes": {"latency": 200, "jitter": 50}})
        )
        times = [(await round_trip(proxy))[1] for _ in range(4)]
    assert all(0.15 <= t < 0.40 for t in times), times


async def test_upstream_latency_delays_the_request_not_only_the_answer() -> None:
    async with proxied() as proxy:
        proxy.add_toxic(
            Toxic.parse({"type": "latency", "stream": "upstream", "attributes": {"latency": 150}})
        )
        _, elapsed = await round_trip(proxy)
    assert 0.14 <= elapsed < 0.5


async def test_a_toxic_added_while_a_connection_idles_applies_to_its_next_chunk() -> None:
    async with proxied() as proxy:
        reader, writer = await connect(proxy)
        writer.write(b"a")
        assert await reader.readexactly(1) == b"a"
        proxy.add_toxic(Toxic.parse({"type": "latency", "attributes": {"latency": 300}}))
        t0 = time.monotonic()
        writer.write(b"b")
        assert await reader.readexactly(1) == b"b"
        slowed = time.monotonic() - t0
        proxy.remove_toxic("latency_downstream")
        t0 = time.monotonic()
        writer.write(b"c")
        assert await reader.readexactly(1) == b"c"
        fast = time.monotonic() - t0
        writer.close()
    assert slowed >= 0.29
    assert fast < 0.1


async def test_bandwidth_paces_a_transfer_to_the_rate() -> None:
    async with proxied() as proxy:
        proxy.add_toxic(Toxic.parse({"type": "bandwidth", "attributes": {"rate": 200}}))
        data, elapsed = await round_trip(proxy, b"x" * 100 * 1024)
    assert len(data) == 100 * 1024
    # 100 KB at 200 KB/s: half a second, give or take the first slice.
    assert 0.4 <= elapsed < 1.5, elapsed


async def _send_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"bye")
    await writer.drain()
    writer.close()


async def test_slow_close_passes_the_close_on_late() -> None:
    async with proxied(_send_then_close) as proxy:
        proxy.add_toxic(Toxic.parse({"type": "slow_close", "attributes": {"delay": 400}}))
        reader, writer = await connect(proxy)
        t0 = time.monotonic()
        assert await reader.readexactly(3) == b"bye"
        got_data = time.monotonic() - t0
        assert await asyncio.wait_for(reader.read(), 5) == b""
        got_eof = time.monotonic() - t0
        writer.close()
    assert got_data < 0.2
    assert got_eof >= 0.39


async def test_timeout_drops_data_then_closes_the_connection() -> None:
    async with proxied() as proxy:
        proxy.add_toxic(Toxic.parse({"type": "timeout", "attributes": {"timeout": 300}}))
        reader, writer = await connect(proxy)
        t0 = time.monotonic()
        writer.write(b"hello")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
        elapsed = time.monotonic() - t0
        writer.close()
    assert data == b""  # nothing came back, then the connection closed
    assert 0.29 <= elapsed < 1.0


async def test_timeout_zero_holds_the_connection_silent_until_removed() -> None:
    async with proxied() as proxy:
        proxy.add_toxic(Toxic.parse({"type": "timeout", "attributes": {"timeout": 0}}))
        reader, writer = await connect(proxy)
        writer.write(b"lost")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.5)
        proxy.remove_toxic("timeout_downstream")
        writer.write(b"kept")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"kept"
        writer.close()


async def test_reset_peer_gives_the_client_a_connection_reset() -> None:
    async with proxied() as proxy:
        proxy.add_toxic(Toxic.parse({"type": "reset_peer", "attributes": {"timeout": 100}}))
        reader, writer = await connect(proxy)
        writer.write(b"hello")
        t0 = time.monotonic()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 5)
        elapsed = time.monotonic() - t0
        writer.close()
    assert 0.09 <= elapsed < 1.0
    assert proxy.stats.resets_total == 1


async def test_reset_peer_through_http_is_a_transport_error_for_the_client() -> None:
    with http_server() as port:
        async with contextlib.AsyncExitStack():
            proxy = await FaultProxy("http", ("127.0.0.1", port)).start()
            try:
                proxy.add_toxic(Toxic.parse({"type": "reset_peer"}))
                async with httpx.AsyncClient() as client:
                    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                        await client.get(f"http://127.0.0.1:{proxy.port}/", timeout=5)
            finally:
                await proxy.stop()


async def test_limit_data_closes_after_exactly_that_many_bytes() -> None:
    async with proxied() as proxy:
        proxy.add_toxic(Toxic.parse({"type": "limit_data", "attributes": {"bytes": 1000}}))
        reader, writer = await connect(proxy)
        writer.write(b"y" * 5000)
        await writer.drain()
        received = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 5):
            received += chunk
        writer.close()
    assert received == b"y" * 1000


async def test_toxicity_decides_per_connection_which_connections_get_the_toxic() -> None:
    async with proxied(seed=7) as proxy:
        proxy.add_toxic(
            Toxic.parse({"type": "latency", "toxicity": 0.5, "attributes": {"latency": 200}})
        )
        times = [(await round_trip(proxy))[1] for _ in range(16)]
    slow = [t for t in times if t >= 0.19]
    assert 0 < len(slow) < len(times), times


async def test_a_disabled_proxy_refuses_and_an_enabled_one_forwards_again() -> None:
    async with proxied() as proxy:
        proxy.set_enabled(False)
        reader, writer = await connect(proxy)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        proxy.set_enabled(True)
        data, _ = await round_trip(proxy)
    assert data == b"ping"
    assert proxy.stats.refused_total == 1


async def test_a_dependency_that_is_down_drops_the_client_connection() -> None:
    async with tcp_server(_echo) as port:
        pass  # closed: nothing listens there any more
    proxy = await FaultProxy("gone", ("127.0.0.1", port)).start()
    try:
        reader, writer = await connect(proxy)
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await proxy.stop()
    assert proxy.stats.refused_total == 1


@pytest.mark.parametrize(
    ("toxic", "error"),
    [
        ({"type": "packet_loss"}, "unknown toxic type"),
        ({"type": "latency", "stream": "sideways"}, "stream must be"),
        ({"type": "latency", "toxicity": 2}, "toxicity must be"),
        ({"type": "latency", "attributes": {"delay": 5}}, "latency takes"),
        ({"type": "bandwidth"}, "rate above 0"),
        ({"type": "latency", "attributes": {"latency": -1}}, "must not be negative"),
    ],
)
def test_an_invalid_toxic_is_refused_with_the_reason(toxic: dict[str, Any], error: str) -> None:
    with pytest.raises(ToxicError, match=error):
        Toxic.parse(toxic)


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the services' clients use

    def do_GET(self) -> None:
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_the_api_adds_and_removes_toxics_on_live_http_traffic() -> None:
    with http_server() as port:
        proxy = FaultProxy("web", ("127.0.0.1", port))
        thread = ProxyThread(ProxyServer([proxy])).start()
        try:
            api = ProxyClient(thread.server.url)
            base = f"http://127.0.0.1:{proxy.port}"
            with httpx.Client(base_url=base, timeout=5) as web:
                assert web.get("/").text == "hello"
                api.add_toxic(
                    "web", {"type": "latency", "name": "slow", "attributes": {"latency": 300}}
                )
                assert [t["name"] for t in api.toxics("web")] == ["slow"]
                t0 = time.monotonic()
                assert web.get("/").text == "hello"  # same keep-alive connection
                slowed = time.monotonic() - t0
                with pytest.raises(ToxicError, match="409"):
                    api.add_toxic("web", {"type": "latency", "name": "slow"})
                api.reset()
                t0 = time.monotonic()
                assert web.get("/").text == "hello"
                fast = time.monotonic() - t0
            assert api.toxics("web") == []
            assert api.proxies()["web"]["stats"]["connections_total"] == 1
            with pytest.raises(ToxicError, match="404"):
                api.remove_toxic("web", "slow")
            with pytest.raises(ToxicError, match="400"):
                api.add_toxic("web", {"type": "nonsense"})
        finally:
            thread.stop()
    assert slowed >= 0.29
    assert fast < 0.2
