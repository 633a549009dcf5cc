"""The operator API under ``/admin``: bearer-token protected, refused when no token is set."""

from __future__ import annotations

import hmac
from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, put
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from services.chassis.errors import ProblemError
from services.chassis.faults import Fault, FaultInjector


def require_admin(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Litestar guard: ``Authorization: Bearer $REDLINE_ADMIN_TOKEN``."""
    token = connection.app.state.ctx.settings.admin_token
    if not token:
        raise ProblemError(
            "The admin API is disabled: set REDLINE_ADMIN_TOKEN to enable it.",
            status=403,
            type_slug="admin-disabled",
        )
    header = connection.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise ProblemError(
            "A valid admin bearer token is required.",
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="admin"'},
        )


class FaultsBody(msgspec.Struct, forbid_unknown_fields=True):
    faults: list[Fault]


class FaultsController(Controller):
    path = "/admin/faults"
    guards = [require_admin]
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def list_faults(self, request: Request[Any, Any, Any]) -> FaultsBody:
        injector: FaultInjector = request.app.state.ctx.faults
        return FaultsBody(faults=injector.faults)

    @put("/", sync_to_thread=False)
    def set_faults(self, request: Request[Any, Any, Any], data: FaultsBody) -> FaultsBody:
        injector: FaultInjector = request.app.state.ctx.faults
        injector.set(data.faults)
        return FaultsBody(faults=injector.faults)

    @delete("/", sync_to_thread=False, status_code=200)
    def clear_faults(self, request: Request[Any, Any, Any]) -> FaultsBody:
        injector: FaultInjector = request.app.state.ctx.faults
        injector.clear()
        return FaultsBody(faults=[])
