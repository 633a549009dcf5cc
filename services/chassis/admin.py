"""The operator API under ``/admin``: bearer-token protected, refused when no token is set.

Served only on the ops listener (services/chassis/ops.py), never on the public
port; every call that passes the guard is logged, so the log says who changed
a fault flag or forced a breaker, and when.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from services.chassis.errors import ProblemError
from services.chassis.faults import Fault, FaultInjector
from services.chassis.resilience import snapshot_all
from telemetry import get_logger

_log = get_logger("admin")


async def require_admin(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Litestar guard: ``Authorization: Bearer $REDLINE_ADMIN_TOKEN``.

    A coroutine so Litestar runs it on the event loop, not in its thread pool.
    """
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
    client = connection.client
    _log.info(
        "admin call",
        method=connection.scope.get("method"),
        path=connection.url.path,
        client=client.host if client else None,
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


class ResilienceController(Controller):
    """Read every breaker, bulkhead and retrier; force a breaker's state."""

    path = "/admin/resilience"
    guards = [require_admin]
    include_in_schema = False

    @get("/", sync_to_thread=False)
    def snapshot(self) -> dict[str, Any]:
        return {kind: [_plain(s) for s in items] for kind, items in snapshot_all().items()}

    @post("/breakers/{name:str}/{action:str}", sync_to_thread=False, status_code=200)
    def control(self, request: Request[Any, Any, Any], name: str, action: str) -> dict[str, Any]:
        """``action``: force-open, force-closed, disable or reset."""
        breaker = _downstream(request, name).breaker
        actions = {
            "force-open": breaker.force_open,
            "force-closed": breaker.force_closed,
            "disable": breaker.disable,
            "reset": breaker.reset,
        }
        if action not in actions:
            raise ProblemError(
                f"Unknown action {action!r}; expected one of {', '.join(actions)}.", status=400
            )
        actions[action]()
        return _plain(breaker.snapshot())


class BulkheadLimits(msgspec.Struct, forbid_unknown_fields=True):
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    max_wait: Annotated[float, msgspec.Meta(ge=0, le=60)] | None = None


class BulkheadController(Controller):
    """Resize a dependency's bulkhead at run time, or put back its configured limits."""

    path = "/admin/resilience/bulkheads"
    guards = [require_admin]
    include_in_schema = False

    @post("/{name:str}/resize", sync_to_thread=False, status_code=200)
    def resize(
        self, request: Request[Any, Any, Any], name: str, data: BulkheadLimits
    ) -> dict[str, Any]:
        downstream = _downstream(request, name)
        downstream.bulkhead.resize(data.max_concurrent, data.max_wait)
        return _plain(downstream.bulkhead.snapshot())

    @post("/{name:str}/reset", sync_to_thread=False, status_code=200)
    def reset(self, request: Request[Any, Any, Any], name: str) -> dict[str, Any]:
        downstream = _downstream(request, name)
        downstream.bulkhead.resize(downstream.config.max_concurrent, downstream.config.max_wait)
        return _plain(downstream.bulkhead.snapshot())


def _downstream(request: Request[Any, Any, Any], name: str) -> Any:
    downstream = request.app.state.ctx.downstreams.get(name)
    if downstream is None:
        raise ProblemError(f"No dependency named {name!r}.", status=404)
    return downstream


def _plain(snapshot: Any) -> dict[str, Any]:
    """A snapshot dataclass as JSON-able builtins: enums as values, tuple keys as "a->b"."""

    def convert(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, dict):
            return {
                "->".join(map(str, convert(list(k))))
                if isinstance(k, tuple)
                else str(convert(k)): convert(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    result: dict[str, Any] = convert(dataclasses.asdict(snapshot))
    return result
