"""Fault flags: latency, errors and hangs injected into a running service.

Off by default; set through the authenticated admin API (``/admin/faults``),
so chaos experiments need no code change and no restart. A fault matches a
route template (or ``*``) and method, and applies to a ``fraction`` of the
matching requests. Faults run inside the telemetry middleware, so what they do
shows up in the RED metrics, traces and logs exactly as a real failure would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from services.chassis.errors import ProblemError
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
    # Never start the handler (until the fault is cleared).
    hang: bool = False
    # Run the handler (its effects commit), then withhold the response until the
    # fault is cleared: "the answer was lost after the work was done".
    hang_response: bool = False
    fraction: Ratio = 1.0
    # Affect at most this many requests, then do nothing (None: no limit).
    limit: Annotated[int, msgspec.Meta(ge=1)] | None = None

    def matches(self, method: str, route: str) -> bool:
        return (self.route in ("*", route)) and (self.method in ("*", method))


@dataclass(frozen=True)
class Verdict:
    status: int | None = None  # fail the request with this status
    withhold_response: bool = False


# A hung request is released by clearing the faults, or after this long.
MAX_HANG_SECONDS = 120.0


@dataclass
class FaultInjector:
    faults: list[Fault] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)
    _hits: dict[int, int] = field(default_factory=dict)
    _cleared: asyncio.Event | None = None

    def set(self, faults: list[Fault]) -> None:
        self.release_hung()
        self.faults = list(faults)
        self._hits = {}
        _log.warning("faults set", faults=[msgspec.to_builtins(f) for f in faults])

    def clear(self) -> None:
        if self.faults:
            _log.warning("faults cleared")
        self.faults = []
        self.release_hung()

    def release_hung(self) -> None:
        if self._cleared is not None:
            self._cleared.set()
        self._cleared = None

    async def hang(self) -> None:
        """Block until the faults are cleared (or MAX_HANG_SECONDS)."""
        if self._cleared is None:
            self._cleared = asyncio.Event()
        event = self._cleared
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), MAX_HANG_SECONDS)

    async def apply(self, method: str, route: str) -> Verdict:
        """Delay or hang as the matching faults say; say how the request must end."""
        withhold = False
        for index, fault in enumerate(self.faults):
            if not fault.matches(method, route) or self.rng.random() >= fault.fraction:
                continue
            if fault.limit is not None:
                if self._hits.get(index, 0) >= fault.limit:
                    continue
                self._hits[index] = self._hits.get(index, 0) + 1
            if fault.hang:
                await self.hang()
            delay = fault.latency_ms + (self.rng.uniform(-1, 1) * fault.jitter_ms)
            if delay > 0:
                await asyncio.sleep(delay / 1000)
            if fault.error_rate and self.rng.random() < fault.error_rate:
                return Verdict(status=fault.error_status)
            withhold = withhold or fault.hang_response
        return Verdict(withhold_response=withhold)


# Paths a fault never touches: operators must still see and undo what is going on.
PROTECTED_PREFIXES = ("/admin", "/health", "/metrics", "/schema")


def _withheld(send: Any, injector: FaultInjector) -> Any:
    """A send that holds the response back until the faults are cleared."""

    async def withheld(message: Any) -> None:
        if message["type"] == "http.response.start":
            await injector.hang()
        await send(message)

    return withheld


class FaultMiddleware(ASGIMiddleware):
    """Applies the injector's faults to every request but the operators' own paths."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, injector: FaultInjector) -> None:
        self.injector = injector

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        injector = self.injector
        if injector.faults and not scope["path"].startswith(PROTECTED_PREFIXES):
            http_scope = cast("HTTPScope", scope)
            verdict = await injector.apply(
                http_scope["method"], http_scope.get("path_template", "")
            )
            if verdict.status is not None:
                raise ProblemError(
                    "Injected fault (chaos experiment).",
                    status=verdict.status,
                    type_slug="injected-fault",
                )
            if verdict.withhold_response:
                await next_app(scope, receive, _withheld(send, injector))
                return
        await next_app(scope, receive, send)
