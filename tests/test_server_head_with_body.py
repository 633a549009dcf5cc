"""Each response's head goes out with its body in one write (services/chassis/server.py).

First the transport wrapper against a recording transport (what is written,
when), then the real uvicorn protocol serving the shapes a response can take:
whole, streamed with pauses, to HEAD, after ``100 Continue``, with
``Connection: close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from services.chassis.server import CoalescingHttpToolsProtocol, _HeadWithBody


class Recording:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"extra:{name}"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


async def test_the_head_waits_for_the_body_and_both_go_out_in_one_write() -> None:
    raw = Recording()
    transport = _HeadWithBody(raw, asyncio.get_running_loop())
    transport.write(HEAD)
    assert raw.writes == []
    transport.write(b"ok")
    assert raw.writes == [HEAD + b"ok"]
    await asyncio.sleep(0)  # the cancelled flush writes nothing more
    assert raw.writes == [HEAD + b"ok"]


async def test_a_head_alone_goes_out_on_the_next_turn_of_the_loop() -> None:
    raw = Recording()
    transport = _HeadWithBody(raw, asyncio.get_running_loop())
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert raw.writes == [HEAD]
    transport.write(b"ok")
    assert raw.writes == [HEAD, b"ok"]


async def test_continue_is_not_held_and_closing_writes_what_is() -> None:
    raw = Recording()
    transport = _HeadWithBody(raw, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert raw.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    transport.write(HEAD)
    transport.close()
    assert raw.writes[-1] == HEAD
    assert raw.closed
    assert transport.get_extra_info("peername") == "extra:peername"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in (b"one ", b"two ", b"three"):
            await asyncio.sleep(0.01)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers = [(b"content-length", str(len(body) or 2).encode())]
    if path == "/close":
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body or b"ok"})


class PeerTransport(Recording):
    """What uvicorn's protocol asks of a TCP transport, recording what it writes."""

    def get_extra_info(self, name: str) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_uvicorns_protocol_writes_a_response_in_one_write() -> None:
    """Through the real protocol: if a uvicorn release moves what the wrapper
    reaches into, the head and the body go out in two writes again and this fails."""
    config = uvicorn.Config(app, http=CoalescingHttpToolsProtocol, log_config=None)
    config.load()
    protocol = CoalescingHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = PeerTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    for _ in range(100):
        if transport.writes:
            break
        await asyncio.sleep(0.01)
    protocol.connection_lost(None)
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\nok")


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app, http=CoalescingHttpToolsProtocol, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def exchange(port: int, request: bytes, *, until: bytes, body: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        if body:
            assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == (
                b"HTTP/1.1 100 Continue\r\n\r\n"
            )
            writer.write(body)
        data = b""
        while until not in data:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("request_bytes", "until", "body", "expected"),
    [
        (b"GET / HTTP/1.1\r\nhost: x\r\n\r\n", b"ok", b"", [b"200 OK", b"\r\n\r\nok"]),
        (
            b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n",
            b"0\r\n\r\n",
            b"",
            [b"transfer-encoding: chunked", b"4\r\none \r\n", b"5\r\nthree\r\n0\r\n\r\n"],
        ),
        (b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n", b"\r\n\r\n", b"", [b"content-length: 2"]),
        (
            b"POST / HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n",
            b"hello",
            b"hello",
            [b"content-length: 5", b"\r\n\r\nhello"],
        ),
        (b"GET /close HTTP/1.1\r\nhost: x\r\n\r\n", b"ok", b"", [b"connection: close"]),
    ],
    ids=["whole", "streamed", "head", "100-continue", "connection-close"],
)
async def test_every_response_shape_arrives_whole(
    request_bytes: bytes, until: bytes, body: bytes, expected: list[bytes]
) -> None:
    async with serving() as port:
        data = await exchange(port, request_bytes, until=until, body=body)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    for part in expected:
        assert part in data
