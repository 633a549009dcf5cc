"""A TCP fault proxy with Toxiproxy's toxics, in asyncio, controlled at runtime.

``tc netem`` is not available on this kernel and Toxiproxy has no package here,
so network faults are injected in user space: a service is pointed at the
proxy instead of its dependency (``redline up --env
orders:REDLINE_PAYMENTS_URL=http://127.0.0.1:<proxy port>``) and toxics are
added and removed while traffic flows, through an in-process object or the
same REST API shape as Toxiproxy's (``POST /proxies/<name>/toxics``,
``DELETE /proxies/<name>/toxics/<toxic>``, ``POST /reset``).

Toxics act on a *stream*: ``upstream`` is client → dependency, ``downstream``
(the default, as in Toxiproxy) dependency → client. Like Toxiproxy's, they
sit in the data path and are re-read for every chunk, so a toxic added while
a keep-alive connection idles applies to its next request; ``toxicity`` is
the chance that a toxic applies to a given connection.

=============  ===========================  ========================================
type           attributes                   effect on the stream
=============  ===========================  ========================================
latency        latency, jitter (ms)         each chunk delayed latency ± jitter
bandwidth      rate (KB/s)                  chunks paced to at most ``rate``
slow_close     delay (ms)                   the close is passed on ``delay`` late
timeout        timeout (ms)                 data is dropped; the connection is
                                            closed after ``timeout`` (0: never)
reset_peer     timeout (ms)                 after ``timeout`` the client gets a TCP
                                            RST (SO_LINGER 0) instead of data
limit_data     bytes                        the connection is closed once
                                            ``bytes`` have passed
=============  ===========================  ========================================
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

STREAMS = ("upstream", "downstream")
# Every attribute each toxic type takes, with its default (Toxiproxy's names).
TOXIC_ATTRIBUTES: dict[str, dict[str, float]] = {
    "latency": {"latency": 0.0, "jitter": 0.0},
    "bandwidth": {"rate": 0.0},
    "slow_close": {"delay": 0.0},
    "timeout": {"timeout": 0.0},
    "reset_peer": {"timeout": 0.0},
    "limit_data": {"bytes": 0.0},
}
CHUNK = 32 * 1024


class ToxicError(ValueError):
    """A toxic that cannot be applied as described."""


@dataclass(frozen=True)
class Toxic:
    type: str
    name: str = ""
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Toxic:
        """Validate a toxic as the API or an experiment describes it; fill in defaults."""
        kind = data.get("type")
        if kind not in TOXIC_ATTRIBUTES:
            raise ToxicError(
                f"unknown toxic type {kind!r}; expected one of {list(TOXIC_ATTRIBUTES)}"
            )
        stream = data.get("stream", "downstream")
        if stream not in STREAMS:
            raise ToxicError(f"stream must be one of {STREAMS}, not {stream!r}")
        toxicity = float(data.get("toxicity", 1.0))
        if not 0.0 <= toxicity <= 1.0:
            raise ToxicError(f"toxicity must be in [0, 1], not {toxicity}")
        given = dict(data.get("attributes") or {})
        unknown = set(given) - set(TOXIC_ATTRIBUTES[kind])
        if unknown:
            raise ToxicError(
                f"{kind} takes {sorted(TOXIC_ATTRIBUTES[kind])}, not {sorted(unknown)}"
            )
        attributes = {k: float(given.get(k, v)) for k, v in TOXIC_ATTRIBUTES[kind].items()}
        if any(v < 0 for v in attributes.values()):
            raise ToxicError(f"{kind} attributes must not be negative: {attributes}")
        if kind == "bandwidth" and attributes["rate"] <= 0:
            raise ToxicError("bandwidth needs a rate above 0 KB/s")
        name = str(data.get("name") or f"{kind}_{stream}")
        return cls(type=kind, name=name, stream=stream, toxicity=toxicity, attributes=attributes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Connection:
    """One client connection and its upstream; closing either side closes both."""

    _ids = itertools.count(1)

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.id = next(self._ids)
        self.client = client
        self.upstream = upstream
        self.closed = False
        # Per toxic name: does it apply to this connection (drawn once, by toxicity)?
        self.applies: dict[str, bool] = {}
        self.passed = {"upstream": 0, "downstream": 0}
        self.timers: dict[str, asyncio.Task[None]] = {}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.close()
        for task in self.timers.values():
            task.cancel()

    def reset(self) -> None:
        """Close the client side with a TCP RST rather than a FIN."""
        with contextlib.suppress(OSError, AttributeError):
            sock = self.client.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.closed = True
        with contextlib.suppress(Exception):
            self.client.transport.abort()
        with contextlib.suppress(Exception):
            self.upstream.transport.abort()
        for task in self.timers.values():
            task.cancel()


@dataclass
class ProxyStats:
    connections_total: int = 0
    connections_active: int = 0
    refused_total: int = 0
    resets_total: int = 0
    bytes_upstream: int = 0
    bytes_downstream: int = 0


class FaultProxy:
    """Listens on ``listen``, forwards to ``upstream``, applying the current toxics."""

    def __init__(
        self,
        name: str,
        upstream: tuple[str, int],
        listen: tuple[str, int] = ("127.0.0.1", 0),
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.upstream = upstream
        self.listen = listen
        self.toxics: dict[str, Toxic] = {}
        self.enabled = True
        self.stats = ProxyStats()
        self._rng = rng or random.Random()  # noqa: S311 - jitter and toxicity, not secrets
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, *self.listen, reuse_address=True)
        self.listen = self._server.sockets[0].getsockname()[:2]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._close_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def port(self) -> int:
        return int(self.listen[1])

    # -- control -----------------------------------------------------------------------
    def add_toxic(self, toxic: Toxic) -> Toxic:
        if toxic.name in self.toxics:
            raise ToxicError(f"proxy {self.name} already has a toxic named {toxic.name!r}")
        self.toxics[toxic.name] = toxic
        return toxic

    def remove_toxic(self, name: str) -> bool:
        return self.toxics.pop(name, None) is not None

    def set_enabled(self, enabled: bool) -> None:
        """Disabled: every connection is closed and new ones are refused (Toxiproxy's "down")."""
        self.enabled = enabled
        if not enabled:
            self._close_all()

    def reset(self) -> None:
        self.toxics.clear()
        self.enabled = True

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": f"{self.listen[0]}:{self.listen[1]}",
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
            "enabled": self.enabled,
            "toxics": [t.as_dict() for t in self.toxics.values()],
            "stats": asdict(self.stats),
        }

    def _close_all(self) -> None:
        for conn in list(self._connections):
            conn.close()

    # -- data path ---------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.enabled:
            self.stats.refused_total += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            # The dependency is down: the client sees the connection drop, as it would.
            self.stats.refused_total += 1
            writer.transport.abort()
            return
        conn = _Connection(writer, up_writer)
        self._connections.add(conn)
        self.stats.connections_total += 1
        self.stats.connections_active += 1
        try:
            await asyncio.gather(
                self._pipe(conn, "upstream", reader, up_writer),
                self._pipe(conn, "downstream", up_reader, writer),
            )
        finally:
            conn.close()
            self._connections.discard(conn)
            self.stats.connections_active -= 1

    def _active(self, conn: _Connection, stream: str) -> list[Toxic]:
        active = []
        for toxic in list(self.toxics.values()):
            if toxic.stream != stream:
                continue
            if toxic.name not in conn.applies:
                conn.applies[toxic.name] = self._rng.random() < toxic.toxicity
            if conn.applies[toxic.name]:
                active.append(toxic)
        return active

    def _after(self, conn: _Connection, key: str, ms: float, action: Callable[[], None]) -> None:
        """Run ``action`` ``ms`` from now, once per connection and key."""
        if key in conn.timers:
            return

        async def later() -> None:
            await asyncio.sleep(ms / 1000)
            action()

        task = asyncio.ensure_future(later())
        conn.timers[key] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reset(self, conn: _Connection) -> None:
        if not conn.closed:
            self.stats.resets_total += 1
        conn.reset()

    async def _pipe(
        self,
        conn: _Connection,
        stream: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            while not conn.closed:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if not await self._forward(conn, stream, data, writer):
                    return
            if conn.closed:
                return
            # The sender closed its side: pass the close on (late, with slow_close).
            delay = max(
                (
                    t.attributes["delay"]
                    for t in self._active(conn, stream)
                    if t.type == "slow_close"
                ),
                default=0.0,
            )
            if delay:
                await asyncio.sleep(delay / 1000)
            if writer.can_write_eof():
                writer.write_eof()
            else:
                conn.close()
        except (ConnectionError, OSError):
            conn.close()

    async def _forward(
        self, conn: _Connection, stream: str, data: bytes, writer: asyncio.StreamWriter
    ) -> bool:
        """Send ``data`` through the toxics; False once the connection is gone."""
        rate = 0.0
        for toxic in self._active(conn, stream):
            a = toxic.attributes
            if toxic.type == "latency":
                delay = a["latency"] + self._rng.uniform(-a["jitter"], a["jitter"])
                if delay > 0:
                    await asyncio.sleep(delay / 1000)
            elif toxic.type == "timeout":
                if a["timeout"] > 0:
                    self._after(conn, toxic.name, a["timeout"], conn.close)
                return not conn.closed  # the data is dropped
            elif toxic.type == "reset_peer":
                if a["timeout"] > 0:
                    self._after(conn, toxic.name, a["timeout"], lambda: self._reset(conn))
                    return not conn.closed
                self._reset(conn)
                return False
            elif toxic.type == "limit_data":
                room = int(a["bytes"]) - conn.passed[stream]
                if room <= len(data):
                    await self._write(conn, stream, data[: max(room, 0)], writer, rate)
                    conn.close()
                    return False
            elif toxic.type == "bandwidth":
                rate = a["rate"] if not rate else min(rate, a["rate"])
        if conn.closed:
            return False
        await self._write(conn, stream, data, writer, rate)
        return True

    async def _write(
        self,
        conn: _Connection,
        stream: str,
        data: bytes,
        writer: asyncio.StreamWriter,
        rate_kb_s: float,
    ) -> None:
        if not data:
            return
        # Pace in slices of a tenth of a second's worth at the given rate.
        step = max(1, int(rate_kb_s * 1024 / 10)) if rate_kb_s else len(data)
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            writer.write(piece)
            await writer.drain()
            conn.passed[stream] += len(piece)
            if stream == "upstream":
                self.stats.bytes_upstream += len(piece)
            else:
                self.stats.bytes_downstream += len(piece)
            if rate_kb_s:
                await asyncio.sleep(len(piece) / (rate_kb_s * 1024))


# -- the control API -------------------------------------------------------------------

Handler = Callable[[str, str, Any], Awaitable[tuple[int, Any]]]


class ProxyServer:
    """Named proxies plus a small JSON API over them, in Toxiproxy's shape.

    ``GET /proxies``; ``GET|POST /proxies/<name>`` (``{"enabled": false}``);
    ``GET|POST /proxies/<name>/toxics``; ``DELETE /proxies/<name>/toxics/<toxic>``;
    ``POST /reset`` (every toxic removed, every proxy enabled). Loopback only,
    like Toxiproxy's API: whoever can reach it can already reach the services.
    """

    def __init__(self, proxies: list[FaultProxy], api: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.proxies = {p.name: p for p in proxies}
        self.api = api
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.api[0]}:{self.api[1]}"

    async def start(self) -> ProxyServer:
        for proxy in self.proxies.values():
            await proxy.start()
        self._server = await asyncio.start_server(self._serve, *self.api, reuse_address=True)
        self.api = self._server.sockets[0].getsockname()[:2]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for proxy in self.proxies.values():
            await proxy.stop()

    async def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts == ["reset"] and method == "POST":
            for proxy in self.proxies.values():
                proxy.reset()
            return 204, None
        if parts == ["proxies"] and method == "GET":
            return 200, {name: p.describe() for name, p in self.proxies.items()}
        if len(parts) < 2 or parts[0] != "proxies":
            return 404, {"error": f"no route {method} {path}"}
        named = self.proxies.get(parts[1])
        if named is None:
            return 404, {"error": f"no proxy named {parts[1]!r}"}
        proxy = named
        rest = parts[2:]
        if not rest:
            if method == "POST":
                proxy.set_enabled(bool((body or {}).get("enabled", True)))
            return 200, proxy.describe()
        if rest == ["toxics"] and method == "GET":
            return 200, [t.as_dict() for t in proxy.toxics.values()]
        if rest == ["toxics"] and method == "POST":
            try:
                toxic = proxy.add_toxic(Toxic.parse(body or {}))
            except ToxicError as exc:
                return 409 if "already" in str(exc) else 400, {"error": str(exc)}
            return 200, toxic.as_dict()
        if len(rest) == 2 and rest[0] == "toxics" and method == "DELETE":
            if proxy.remove_toxic(rest[1]):
                return 204, None
            return 404, {"error": f"proxy {proxy.name} has no toxic {rest[1]!r}"}
        return 404, {"error": f"no route {method} {path}"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").split()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            raw = await reader.readexactly(length) if length else b""
            if len(request_line) < 2:
                status, payload = 400, {"error": "bad request line"}
            else:
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    status, payload = 400, {"error": "body is not JSON"}
                else:
                    status, payload = await self.handle(request_line[0], request_line[1], body)
            content = b"" if payload is None else json.dumps(payload).encode()
            head = (
                f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + content)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


class ProxyThread:
    """A ``ProxyServer`` on its own event loop in a daemon thread (for tools and tests)."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> ProxyThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class ProxyClient:
    """The API, from an experiment's actions (another process, typically)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = httpx.request(method, f"{self.url}{path}", json=body, timeout=self.timeout)
        if r.status_code >= 400:
            raise ToxicError(f"{method} {path}: {r.status_code} {r.text}")
        return r.json() if r.content else None

    def proxies(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/proxies")
        return result

    def add_toxic(self, proxy: str, toxic: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/proxies/{proxy}/toxics", toxic)
        return result

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"/proxies/{proxy}/toxics")
        return result

    def set_enabled(self, proxy: str, enabled: bool) -> None:
        self._call("POST", f"/proxies/{proxy}", {"enabled": enabled})

    def reset(self) -> None:
        self._call("POST", "/reset")
