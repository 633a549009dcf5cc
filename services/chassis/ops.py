"""The operators' listener: the admin and fault API on a port of its own.

Fault flags can make every request hang and a forced-open breaker refuses
every call, so these endpoints are never served where the public API is. Each
service listens twice, in one process and one event loop:

* ``REDLINE_HOST:REDLINE_PORT``, the public app: the service's routes, probes
  and ``/metrics``, and no ``/admin`` route at all;
* ``REDLINE_OPS_HOST:REDLINE_OPS_PORT`` (loopback and the public port + 100 by
  default), the ops app: ``/admin/*`` only, still behind the bearer
  ``REDLINE_ADMIN_TOKEN`` (unset: every admin call is refused).

Which app answers is decided by the listening socket a connection arrived on,
not by anything the client sends, so no header or path can reach the ops app
through the public port. Both apps share the service's ``ServiceContext``
(its fault injector, its dependencies' breakers and bulkheads).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from litestar import Litestar
from litestar.di import Provide
from litestar.types import ASGIApp, ControllerRouterHandler, Receive, Scope, Send

from services.chassis.admin import BulkheadController, FaultsController, ResilienceController
from services.chassis.errors import exception_handlers

if TYPE_CHECKING:
    from services.chassis.app import ServiceContext

OPS_HANDLERS: tuple[ControllerRouterHandler, ...] = (
    FaultsController,
    ResilienceController,
    BulkheadController,
)


def create_ops_app(
    ctx: ServiceContext,
    handlers: Sequence[ControllerRouterHandler],
    *,
    dependencies: Mapping[str, Provide] | None = None,
) -> Litestar:
    """The admin API of one service, over the same context and providers as its public app."""
    app = Litestar(
        route_handlers=[*OPS_HANDLERS, *handlers],
        dependencies=dict(dependencies or {}),
        exception_handlers=exception_handlers(),
        openapi_config=None,
        debug=False,
        logging_config=None,
    )
    app.state.ctx = ctx
    # Admin calls are traced and in the access log like any other (request_id included).
    ctx.telemetry.instrument(app)
    return app


class ListenerRouter:
    """One ASGI app over two listeners: the ops port's connections go to the ops app.

    Lifespan events go to the public app, which owns start-up and shutdown.
    """

    def __init__(self, public: ASGIApp, ops: ASGIApp, *, ops_port: int) -> None:
        self.public = public
        self.ops = ops
        self.ops_port = ops_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server: Any = scope.get("server")  # absent from lifespan events
        if server and server[1] == self.ops_port:
            await self.ops(scope, receive, send)
            return
        await self.public(scope, receive, send)


def listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket (IPv4 or IPv6), ready for uvicorn; raises OSError when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock
