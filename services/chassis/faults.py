"""Fault flags: latency, errors and hangs injected into a running service.

Off by default; set through the authenticated admin API (``/admin/faults``),
so chaos experiments need no code change and no restart. A fault matches a
route template (or ``*``) and method, and applies to a ``fraction`` of the
matching requests. Faults run inside the telemetry middleware, so what they do
shows up in the RED metrics, traces and logs exactly as a real failure would.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

import msgspec

from telemetry import get_logger

_log = get_logger("faults")

Ratio = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Millis = Annotated[float, msgspec.Meta(ge=0.0, le=600_000.0)]


class Fault(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One fault. Example: ``{"route": "/charges", "latency_ms": 3000, "fraction": 0.5}``."""

    route: str = "*"
    method: str = "*"
    latency_ms: Millis = 0.0
    jitter_ms: Millis = 0.0
    error_rate: Ratio = 0.0
    error_status: Annotated[int, msgspec.Meta(ge=400, le=599)] = 503
    hang: bool = False
    fraction: Ratio = 1.0

    def matches(self, method: str, route: str) -> bool:
        return (self.route in ("*", route)) and (self.method in ("*", method))


@dataclass
class FaultInjector:
    faults: list[Fault] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    def set(self, faults: list[Fault]) -> None:
        self.faults = list(faults)
        _log.warning("faults set", faults=[msgspec.to_builtins(f) for f in faults])

    def clear(self) -> None:
        if self.faults:
            _log.warning("faults cleared")
        self.faults = []

    async def apply(self, method: str, route: str) -> int | None:
        """Delay or hang as the matching faults say; return a status to fail with, if any."""
        for fault in self.faults:
            if not fault.matches(method, route) or self.rng.random() >= fault.fraction:
                continue
            if fault.hang:
                await asyncio.Event().wait()  # until the client or a deadline gives up
            delay = fault.latency_ms + (self.rng.uniform(-1, 1) * fault.jitter_ms)
            if delay > 0:
                await asyncio.sleep(delay / 1000)
            if fault.error_rate and self.rng.random() < fault.error_rate:
                return fault.error_status
        return None


# Paths a fault never touches: operators must still see and undo what is going on.
PROTECTED_PREFIXES = ("/admin", "/health", "/metrics", "/schema")


def fault_middleware_factory(injector: FaultInjector) -> Any:
    from litestar.enums import ScopeType
    from litestar.middleware import ASGIMiddleware
    from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

    from services.chassis.errors import ProblemError

    class FaultMiddleware(ASGIMiddleware):
        scopes = (ScopeType.HTTP,)

        async def handle(
            self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp
        ) -> None:
            if injector.faults and not scope["path"].startswith(PROTECTED_PREFIXES):
                http_scope = cast("HTTPScope", scope)
                status = await injector.apply(
                    http_scope["method"], http_scope.get("path_template", "")
                )
                if status is not None:
                    raise ProblemError(
                        "Injected fault (chaos experiment).",
                        status=status,
                        type_slug="injected-fault",
                    )
            await next_app(scope, receive, send)

    return FaultMiddleware()
