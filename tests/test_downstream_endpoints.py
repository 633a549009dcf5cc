"""The resilient client over several endpoints, against real sockets on loopback.

Where an attempt goes, what happens when one endpoint refuses, answers 503 or
is gone, and what the CLIENT span says about who served. The primitives'
rules are in tests/resilience/test_balancer.py; two real service processes are
in tests/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import Counter
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.chassis.discovery import DnsDiscovery, resolve
from services.chassis.http_client import DependencyConfig, Downstream, DownstreamUnavailable
from services.chassis.resilience import Balancer, OutlierPolicy, Retrier
from tests.test_aiohttp_transport import Seen, echo, read_request, server


def closed_port() -> int:
    """A loopback port nothing listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def unavailable(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen
) -> None:
    while True:
        try:
            await read_request(reader, seen)
        except asyncio.IncompleteReadError:
            return
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def downstream(*urls: str, provider: TracerProvider | None = None, **kw: object) -> Downstream:
    d = Downstream(
        DependencyConfig(name="inventory", base_url=",".join(urls), timeout=1.0, **kw)  # type: ignore[arg-type]
    )

    async def no_sleep(_: float) -> None:
        return None

    d.retrier = Retrier(d.name, d.config.retry, sleep=no_sleep)
    # Seeded: which endpoint a coin toss between two idle ones picks is the same every run.
    d.balancer = Balancer(
        d.name, d.config.endpoints, d.config.outlier, random=random.Random(7).random
    )
    if d._discovery is not None:
        d._discovery = DnsDiscovery(d.balancer, d.config.endpoints, d.config.dns_refresh_seconds)
    if provider is not None:
        d._transport._tracer = provider.get_tracer("test")
    return d


async def test_calls_are_spread_over_every_endpoint() -> None:
    async with server(echo) as (a, seen_a), server(echo) as (b, seen_b):
        d = downstream(a, b)
        try:
            await asyncio.gather(*(d.request("GET", f"/products/{i}") for i in range(24)))
        finally:
            await d.aclose()
    assert len(seen_a.requests) + len(seen_b.requests) == 24
    assert len(seen_a.requests) >= 6
    assert len(seen_b.requests) >= 6


async def test_a_refused_post_fails_over_to_another_endpoint_at_once(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Nothing was sent, so even a non-idempotent call may go elsewhere, without a backoff."""
    provider, exporter = spans
    dead = f"http://127.0.0.1:{closed_port()}"
    async with server(echo) as (live, seen):
        d = downstream(dead, live, provider=provider, outlier=OutlierPolicy(consecutive_failures=2))
        try:
            for _ in range(20):
                response = await d.request("POST", "/reservations", json={"n": 1})
                assert response.status_code == 201
        finally:
            await d.aclose()
    assert len(seen.requests) == 20  # each POST once
    # The dead endpoint is ejected after its 2 consecutive refusals (each pick
    # is a coin toss between two idle endpoints: 2 in 20 is all but certain);
    # the later POSTs no longer try it first.
    snap = {e.address: e for e in d.balancer.snapshot().endpoints}
    dead_address = dead.removeprefix("http://")
    assert snap[dead_address].ejected
    assert snap[dead_address].failures_total == 2
    # One CLIENT span per attempt, each naming the endpoint it went to.
    ports = Counter(span.attributes["server.port"] for span in exporter.get_finished_spans())  # type: ignore[index]
    assert ports[int(live.rsplit(":", 1)[1])] == 20
    assert ports[int(dead.rsplit(":", 1)[1])] == 2


async def test_an_idempotent_call_answered_503_is_retried_on_the_other_endpoint(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    async with server(unavailable) as (bad, seen_bad), server(echo) as (good, seen_good):
        d = downstream(bad, good, provider=provider)
        try:
            for _ in range(20):
                response = await d.request("GET", "/products/1")
                assert response.status_code == 201  # echo's answer: never the 503
        finally:
            await d.aclose()
    # A retry never goes back to the endpoint that just failed (two endpoints:
    # the other one), so every call needed at most two attempts.
    assert len(seen_good.requests) == 20
    assert 1 <= len(seen_bad.requests) <= 5
    served = [
        s.attributes["server.port"]
        for s in exporter.get_finished_spans()
        if s.attributes and s.attributes.get("http.response.status_code") == 201
    ]
    assert set(served) == {int(good.rsplit(":", 1)[1])}
    assert d.breaker.snapshot().failures_total == 0  # the calls succeeded


async def test_a_post_answered_503_is_not_resent_anywhere() -> None:
    async with server(unavailable) as (bad, seen_bad), server(echo) as (good, seen_good):
        d = downstream(bad, good, outlier=OutlierPolicy(consecutive_failures=100))
        try:
            statuses = Counter(
                [(await d.request("POST", "/charges", json={})).status_code for _ in range(9)]
            )
        finally:
            await d.aclose()
    # Sent exactly once each: a 5xx may mean the charge happened.
    assert len(seen_bad.requests) + len(seen_good.requests) == 9
    assert statuses[503] == len(seen_bad.requests) > 0
    assert statuses[201] == len(seen_good.requests) > 0


async def test_every_endpoint_refusing_is_unavailable() -> None:
    d = downstream(f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}")
    try:
        with pytest.raises(DownstreamUnavailable) as caught:
            await d.request("POST", "/charges", json={})
    finally:
        await d.aclose()
    assert caught.value.maybe_delivered is False
    assert sum(e.failures_total for e in d.balancer.snapshot().endpoints) == 2


async def test_a_single_endpoint_is_a_set_of_one() -> None:
    async with server(unavailable) as (url, seen):
        d = downstream(url, outlier=OutlierPolicy(consecutive_failures=1))
        try:
            for _ in range(3):
                assert (await d.request("GET", "/x")).status_code == 503
        finally:
            await d.aclose()
    # Retried on the same endpoint as before balancing existed; never ejected.
    assert len(seen.requests) == 9
    assert not d.balancer.snapshot().endpoints[0].ejected


async def test_dns_names_resolve_to_one_endpoint_per_address() -> None:
    async with server(echo) as (url, seen):
        port = int(url.rsplit(":", 1)[1])
        named = f"http://localhost:{port}"
        assert f"http://127.0.0.1:{port}" in await resolve([named])
        assert await resolve(["http://10.1.2.3:80"]) == ["http://10.1.2.3:80"]
        d = downstream(named, dns_refresh_seconds=30.0)
        try:
            assert (await d.request("GET", "/a")).status_code == 201
            assert d._discovery is not None
            await asyncio.wait_for(d._discovery.refreshed.wait(), 5)
            addresses = {e.host for e in d.balancer.endpoints}
            assert "127.0.0.1" in addresses
            assert "localhost" not in addresses
        finally:
            await d.aclose()
    assert seen.requests


async def test_a_failed_lookup_keeps_the_last_endpoints() -> None:
    d = downstream("http://10.9.9.9:80")
    discovery = DnsDiscovery(d.balancer, ["http://no-such-host.invalid:80"], 30.0)
    await discovery.refresh()
    assert [e.address for e in d.balancer.endpoints] == ["10.9.9.9:80"]
    await d.aclose()


async def test_a_name_that_scales_up_then_down_moves_the_calls_with_it() -> None:
    """A headless Service's answer changes as pods come and go; the calls follow it.

    Two real servers on one port, at 127.0.0.1 and 127.0.0.2. Only the name's
    answer is scripted (this machine resolves no name to two loopback
    addresses): one pod, then both, then only the second. An endpoint that
    stays is the same one (in-flight count and ejection carry over), a new
    one gets calls at once, a removed one gets no more.
    """
    first_seen, second_seen = Seen(), Seen()

    async def serve(host: str, port: int, seen: Seen) -> asyncio.Server:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await echo(reader, writer, seen)
            writer.close()

        return await asyncio.start_server(on_connect, host, port)

    first = await serve("127.0.0.1", 0, first_seen)
    port = first.sockets[0].getsockname()[1]
    second = await serve("127.0.0.2", port, second_seen)
    answer = ["127.0.0.1"]

    async def lookup(host: str, _port: int) -> list[str]:
        assert host == "inventory-headless"
        return list(answer)

    d = downstream("http://10.9.9.9:80")
    discovery = DnsDiscovery(d.balancer, [f"http://inventory-headless:{port}"], 30.0, lookup)
    try:
        await discovery.refresh()
        assert [e.address for e in d.balancer.endpoints] == [f"127.0.0.1:{port}"]
        await asyncio.gather(*(d.request("GET", f"/a/{i}") for i in range(6)))
        assert (len(first_seen.requests), len(second_seen.requests)) == (6, 0)

        kept = d.balancer.endpoints[0]
        answer.append("127.0.0.2")  # scaled up
        await discovery.refresh()
        assert [e.address for e in d.balancer.endpoints] == [
            f"127.0.0.1:{port}",
            f"127.0.0.2:{port}",
        ]
        assert d.balancer.endpoints[0] is kept  # its state carried over
        await asyncio.gather(*(d.request("GET", f"/b/{i}") for i in range(24)))
        assert len(second_seen.requests) > 0
        assert len(first_seen.requests) > 6

        answer.remove("127.0.0.1")  # scaled down
        await discovery.refresh()
        assert [e.address for e in d.balancer.endpoints] == [f"127.0.0.2:{port}"]
        before = len(first_seen.requests)
        await asyncio.gather(*(d.request("GET", f"/c/{i}") for i in range(6)))
        assert len(first_seen.requests) == before

        answer.clear()  # an empty answer keeps the last good set
        await discovery.refresh()
        assert [e.address for e in d.balancer.endpoints] == [f"127.0.0.2:{port}"]
    finally:
        await d.aclose()
        for srv in (first, second):
            srv.close()


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seen: Seen) -> None:
    """Read the request, then reset the connection (RST, no answer): a replica going away."""
    await read_request(reader, seen)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize("path", ["relay", "request"])
async def test_a_reset_connection_is_retried_elsewhere_for_a_read_and_not_for_a_post(
    path: str,
) -> None:
    """The answer was lost after the request went out: safe to ask again only if idempotent."""
    async with server(reset) as (bad, seen_bad), server(echo) as (good, seen_good):
        d = downstream(bad, good)
        alone = downstream(bad)
        try:
            call = d.relay if path == "relay" else d.request
            for i in range(10):
                assert (await call("GET", f"/products/{i}")).status_code == 201
            assert len(seen_bad.requests) >= 1  # the coin toss sent some to the resetting one
            assert len(seen_good.requests) == 10
            before = len(seen_bad.requests)
            post = alone.relay if path == "relay" else alone.request
            with pytest.raises(DownstreamUnavailable) as caught:
                await post("POST", "/reservations", content=b"{}")
            assert caught.value.maybe_delivered  # sent: the caller must not assume otherwise
            assert len(seen_bad.requests) == before + 1  # once: never retried
        finally:
            await d.aclose()
            await alone.aclose()
