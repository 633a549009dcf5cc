"""Run a service under uvicorn with a graceful, observable shutdown.

On SIGTERM (or Ctrl-C):
1. readiness turns 503 at once, while the listener stays open for
   ``REDLINE_DRAIN_SECONDS`` so load balancers see it and stop routing here;
   every response in that time says ``Connection: close``, so callers
   balancing on their side (services/chassis/http_client.py) drop their pooled
   connections to this instance: with a drain longer than their keep-alive
   (4 s, aiohttp_transport.KEEPALIVE_SECONDS) none is left when the listener
   closes, and their next attempt is refused and fails over (nothing sent)
   instead of being lost on a connection closed under it;
2. uvicorn closes the listener and waits up to ``REDLINE_GRACEFUL_TIMEOUT_SECONDS``
   for in-flight requests to finish;
3. the lifespan shutdown runs the service's hooks, closes the pool and flushes
   telemetry; the process exits 0.

uvicorn re-raises the signal after a graceful stop (so the exit status is
-15); a graceful stop is a success here, so this server does not.

One worker per process: prometheus-client's multiprocess mode drops exemplars,
so the platform scales by running more instances, each its own scrape target.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from services.chassis.config import ServiceSettings
from services.chassis.ops import ListenerRouter, listen
from telemetry import get_logger

_log = get_logger("server")


class CloseWhileDraining:
    """ASGI wrapper: once ``draining`` is set, every HTTP response closes its connection."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.draining = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.draining or scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class _HeadWithBody:
    """A response's transport that writes its status line and headers with its body.

    uvicorn writes the head on ``http.response.start`` and the body on
    ``http.response.body``: two system calls, two packets, and the client
    woken twice per response. The head is held until the body's first write,
    which Litestar sends in the same turn of the event loop, and goes out with
    it in one write; if nothing follows in that turn (a streamed or HEAD
    response), the head is written on the loop's next turn. Anything else
    (``100 Continue``, closing) first writes what is held.
    """

    __slots__ = ("_held", "_loop", "_transport", "_turn")

    def __init__(self, transport: Any, loop: Any) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._turn: Any = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._turn.cancel()
            self._transport.write(held + data)
        elif data.startswith(b"HTTP/") and not data.startswith(b"HTTP/1.1 100 "):
            self._held = data
            self._turn = self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        if self._held is not None:
            self._turn.cancel()
            self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, each response's head written with its body."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # uvicorn's attribute (0.54); if a release renames it, this does nothing
        # (tests/test_server_head_with_body.py says so).
        cycle = self.cycle
        if cycle is not None and getattr(cycle, "transport", None) is self.transport:
            cycle.transport = _HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, drain_seconds: float, on_drain: Any) -> None:
        super().__init__(config)
        self._drain_seconds = drain_seconds
        self._on_drain = on_drain
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining:
            # A second signal: stop waiting for in-flight requests.
            if sig == signal.SIGINT or self.should_exit:
                self.force_exit = True
            self.should_exit = True
            return
        self._draining = True
        self._on_drain()
        _log.info("draining", signal=signal.Signals(sig).name, drain_seconds=self._drain_seconds)
        if self._drain_seconds > 0:
            timer = threading.Timer(self._drain_seconds, self._begin_exit)
            timer.daemon = True
            timer.start()
        else:
            self._begin_exit()

    def _begin_exit(self) -> None:
        self.should_exit = True


def serve(app: Any, settings: ServiceSettings) -> None:
    """Serve ``app`` (a Litestar app built by ``create_app``) until stopped; exits the process.

    Two listeners: the public one, and the ops one for ``app.state.ops_app``
    (services/chassis/ops.py).
    """
    sockets = []
    for listener, host, port in (
        ("public", settings.host, settings.port),
        ("ops", settings.ops_host, settings.ops_listen_port),
    ):
        try:
            sockets.append(listen(host, port))
        except OSError as exc:  # e.g. the port is taken
            _log.error("cannot serve", error=str(exc), listener=listener, host=host, port=port)
            sys.exit(1)
    ops_port = sockets[1].getsockname()[1]
    _log.info("ops listener", host=settings.ops_host, port=ops_port)
    closing = CloseWhileDraining(ListenerRouter(app, app.state.ops_app, ops_port=ops_port))
    config = uvicorn.Config(
        closing,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.graceful_timeout_seconds),
        proxy_headers=False,
        http=CoalescingHttpToolsProtocol,
        server_header=False,
        date_header=True,
        workers=1,
    )
    ctx = app.state.ctx

    def on_drain() -> None:
        closing.draining = True
        ctx.telemetry.health.mark_draining()

    server = DrainingServer(config, drain_seconds=settings.drain_seconds, on_drain=on_drain)
    try:
        server.run(sockets=sockets)
    except OSError as exc:  # e.g. the port is taken
        _log.error("cannot serve", error=str(exc), host=settings.host, port=settings.port)
        sys.exit(1)
    if not server.started:
        sys.exit(3)
    sys.exit(0)
