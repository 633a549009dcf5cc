"""A lean HTTP/1.1 client for ``Downstream.relay``: keep-alive pool, httptools' parser.

Why: on the gateway's profile aiohttp's ``ClientSession.request`` was the
largest single cost of a proxied read once httpx's models were gone (request
and response objects, cookie jar, tracing hooks, three timers per request,
all Python); ``benchmarks/http_client.py`` prints both side by side. The
parser is httptools' (C, llhttp; uvicorn's, already a dependency), the rest is
one ``asyncio.Protocol`` per connection.

Only what ``Downstream.relay`` sends: ``GET``, ``POST``, ``PUT``, ``PATCH`` and
``DELETE`` with a body read whole into memory; an answer read whole, bounded by
``max_body_bytes``. Errors are the httpx errors ``aiohttp_transport.py`` maps
aiohttp's to, with the same meaning for the resilient client:

    connecting failed or timed out (pool wait included) -> ConnectError / ConnectTimeout
    no (complete) answer in time                        -> ReadTimeout
    peer closed without a (complete) answer, bad HTTP   -> RemoteProtocolError
    connection reset or another socket error after sending -> ReadError

A connection is reused only after a complete answer that allows it
(``Connection: close`` from a draining server closes it, services/chassis/server.py),
and not after ``keepalive_seconds`` idle (below uvicorn's 5 s, as in
aiohttp_transport.py, so the server never closes one as it is being reused).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import httptools
import httpx

from services.chassis.aiohttp_transport import KEEPALIVE_SECONDS

# Methods the relay sends; a HEAD answer's framing differs and is not handled here.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
MAX_BODY_BYTES = 16 * 1024 * 1024
_USER_AGENT = b"redline-relay"


class WireAnswer:
    """An answer read whole: ``status_code``, ``headers`` (lower-case names, first
    value of each), ``content``; the names ``httpx.Response`` has."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        """The body as JSON (``ValueError`` if it is not), as ``httpx.Response.json``."""
        return json.loads(self.content)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, max_body: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._max_body = max_body
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[WireAnswer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # a request sent, its answer not complete
        self._complete = False
        self._keep_alive = False
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self._busy:
            self.close()  # bytes nobody asked for: this connection is not usable
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"bad HTTP answer: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close: an answer is complete by its framing, never by EOF alone

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None:
            error: httpx.TransportError = httpx.RemoteProtocolError(
                "Server disconnected without a complete answer"
            )
        else:
            error = httpx.ReadError(str(exc) or type(exc).__name__)
        self._fail(error)

    # -- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        if not self._busy:
            raise RuntimeError("a second answer to one request")  # stops the parser

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        if key not in self._headers:
            self._headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        # Read here: the parser forgets it once the message is complete.
        self._keep_alive = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._max_body:
            raise RuntimeError("an answer larger than the relay takes")  # stops the parser
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._busy = False
        self._complete = True
        self._settle()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            status = self._parser.get_status_code()
            waiter.set_result(WireAnswer(status, self._headers, b"".join(self._body)))

    # -- use ---------------------------------------------------------------------------
    def send(self, data: bytes, timeout: float) -> asyncio.Future[WireAnswer]:
        """Send one request; the future is its whole answer, or the error, or
        ``ReadTimeout`` after ``timeout`` seconds."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._headers = {}
        self._body = []
        self._size = 0
        self._busy = True
        self._complete = False
        self._keep_alive = False
        self._waiter = waiter = loop.create_future()
        self._timer = loop.call_later(timeout, self._timed_out)
        self.transport.write(data)
        return waiter

    def reusable(self) -> bool:
        """After an answer: may this connection carry the next request?"""
        self._waiter = None
        return self._complete and self._keep_alive and not self.closed

    def close(self) -> None:
        self.closed = True
        self._busy = False
        self._settle()
        if self.transport is not None:
            self.transport.close()

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(httpx.ReadTimeout("no answer in time"))

    def _settle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, error: httpx.TransportError) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if not self.closed:
            self.close()


class WireClient:
    """Keep-alive connections to any number of ``host:port``, at most ``max_connections`` open."""

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._max = max_connections
        self._keepalive = keepalive_seconds
        self._max_body = max_body_bytes
        self._idle: dict[tuple[str, int], deque[_Connection]] = {}
        self._open = 0  # connections open or being opened
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def send(
        self,
        method: str,
        host: str,
        port: int,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        connect: float,
        read: float,
    ) -> WireAnswer:
        """One request to ``host:port`` for ``target`` (path and query, encoded).

        ``headers``: lower-case names; ``host``, ``content-length``,
        ``user-agent`` and ``accept`` are added when missing. ``connect``
        bounds the wait for a connection (pool included), ``read`` the wait
        for the whole answer once sent.
        """
        if method not in METHODS:
            raise ValueError(f"the relay does not send {method}")
        data = _encode(method, host, port, target, headers, body)
        conn = await self._acquire(host, port, connect)
        reuse = False
        try:
            answer = await conn.send(data, read)
            reuse = conn.reusable()
            return answer
        finally:
            self._release(host, port, conn, reuse)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.popleft().close()
        self._idle.clear()

    # -- the pool ------------------------------------------------------------------------
    async def _acquire(self, host: str, port: int, timeout: float) -> _Connection:  # noqa: ASYNC109
        idle = self._idle.get((host, port))
        if idle:
            now = time.monotonic()
            while idle:
                conn = idle.pop()  # the most recently used: the least likely to be stale
                if not conn.closed and now - conn.idle_since < self._keepalive:
                    return conn
                conn.close()
                self._open -= 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._open >= self._max:
            if not self._close_one_idle():
                waiter: asyncio.Future[None] = loop.create_future()
                self._waiters.append(waiter)
                try:
                    await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
                except BaseException as exc:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                    elif waiter.done() and not waiter.cancelled():
                        self._wake()  # woken, but not taking it: the next one may
                    if isinstance(exc, TimeoutError):
                        raise httpx.ConnectTimeout("no connection free in time") from None
                    raise
                idle = self._idle.get((host, port))
                if idle:
                    conn = idle.pop()
                    if not conn.closed and time.monotonic() - conn.idle_since < self._keepalive:
                        return conn
                    conn.close()
                    self._open -= 1
        self._open += 1
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self._max_body), host, port),
                max(0.0, deadline - loop.time()),
            )
        except TimeoutError:
            self._opened_failed()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            self._opened_failed()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self._opened_failed()
            raise
        return protocol

    def _opened_failed(self) -> None:
        self._open -= 1
        self._wake()

    def _release(self, host: str, port: int, conn: _Connection, reuse: bool) -> None:
        if reuse and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault((host, port), deque()).append(conn)
        else:
            conn.close()
            self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_one_idle(self) -> bool:
        """At the limit: make room by closing an idle connection to another host."""
        for idle in self._idle.values():
            if idle:
                idle.popleft().close()
                self._open -= 1
                return True
        return False


def _encode(
    method: str, host: str, port: int, target: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\n".encode("ascii")]
    if "host" not in headers:
        authority = f"[{host}]" if ":" in host else host
        if port != 80:
            authority = f"{authority}:{port}"
        lines.append(f"host: {authority}\r\n".encode("ascii"))
    for name, value in headers.items():
        if name in ("content-length", "transfer-encoding"):
            continue
        line = f"{name}: {value}\r\n".encode("latin-1")
        if b"\r" in line[:-2] or b"\n" in line[:-2]:
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(line)
    if "user-agent" not in headers:
        lines.append(b"user-agent: " + _USER_AGENT + b"\r\n")
    if "accept" not in headers:
        lines.append(b"accept: */*\r\n")
    if body or method in _BODY_METHODS:
        lines.append(b"content-length: %d\r\n" % len(body or b""))
    lines.append(b"\r\n")
    if body:
        lines.append(body)
    return b"".join(lines)
