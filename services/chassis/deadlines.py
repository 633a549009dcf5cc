"""Request deadlines: the caller's remaining budget, enforced while the handler runs.

The gateway starts a budget per route (``opt={"timeout": seconds}``); every
hop forwards what is left in ``x-deadline-remaining-ms`` and the resilient
client caps each outgoing call's timeout at it. A service that receives a
request whose budget is already spent answers 504 without starting work, and a
handler still running when the budget runs out is cancelled with a 504 — no
work continues for a caller who has given up.

Routes that must finish what they started (the order saga, which compensates
rather than stop half-way) set ``opt={"deadline": "cooperative"}``: the
deadline is available to them but they are not cancelled.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from services.chassis.errors import ProblemError
from services.chassis.resilience import (
    DEADLINE_HEADER,
    Deadline,
    current_deadline,
    from_header,
    set_deadline,
)

_HEADER = DEADLINE_HEADER.encode()


class DeadlineExceededProblem(ProblemError):
    status = 504
    type_slug = "deadline-exceeded"
    title = "Deadline exceeded"


def _incoming(scope: Scope) -> Deadline | None:
    for name, value in scope["headers"]:
        if name == _HEADER:
            return from_header(value.decode("latin-1"))
    return None


class DeadlineMiddleware(ASGIMiddleware):
    """``trust_header=False`` at the public edge: a client's header is not a deadline."""

    scopes = (ScopeType.HTTP,)
    exclude_path_pattern = ("^/health", "^/metrics", "^/admin", "^/schema")

    def __init__(self, *, trust_header: bool = True) -> None:
        self.trust_header = trust_header

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        deadline = _incoming(scope) if self.trust_header else None
        opt: dict[str, Any] = getattr(scope.get("route_handler"), "opt", None) or {}
        route_timeout = opt.get("timeout")
        if route_timeout is not None:
            deadline = Deadline.after(float(route_timeout)).earliest(deadline)
        if deadline is None:
            await next_app(scope, receive, send)
            return
        if deadline.expired:
            raise DeadlineExceededProblem("The caller's time budget was spent before work began.")
        token = set_deadline(deadline)
        try:
            if opt.get("deadline") == "cooperative":
                await next_app(scope, receive, send)
                return
            limit = asyncio.timeout(deadline.remaining())
            try:
                async with limit:
                    await next_app(scope, receive, send)
            except TimeoutError:
                if not limit.expired():
                    raise  # the handler's own timeout, not ours
                raise DeadlineExceededProblem(
                    "The request ran out of time and its work was stopped."
                ) from None
        finally:
            current_deadline.reset(token)
