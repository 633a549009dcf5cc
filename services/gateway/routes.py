"""The public API, ``/api/v1``: authentication, rate limits, budgets, routing.

Each route states its time budget (``opt["timeout"]``, enforced by the
chassis' deadline middleware and forwarded downstream) and whether it needs a
signed-in user (``guards``); the handler only names the service and path.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from prometheus_client import Counter

from services.chassis.auth import Unauthorized, bearer_token, jwt_secret, verify_token
from services.chassis.edge import EdgePolicy
from services.chassis.errors import ProblemError
from services.chassis.http_client import Downstream
from services.gateway.proxy import forward
from services.gateway.ratelimit import RateLimiter
from telemetry import REGISTRY

# Budgets per route family. Auth is hashing-bound (Argon2id), catalog reads are
# one indexed query, orders run a three-service saga.
AUTH_TIMEOUT = 1.0
CATALOG_TIMEOUT = 1.0
ORDERS_TIMEOUT = 3.0

RATE_LIMITED = Counter(
    "gateway_rate_limited_requests",
    "Requests the gateway refused with 429, by what was limited (user or ip).",
    ["scope"],
    registry=REGISTRY,
)
RATE_LIMITED.labels("user")
RATE_LIMITED.labels("ip")


class TooManyRequests(ProblemError):
    status = 429
    type_slug = "rate-limited"
    title = "Too many requests"


def _limiters(connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, RateLimiter]:
    limiters: dict[str, RateLimiter] = connection.app.state.ctx.extras["rate_limiters"]
    return limiters


def _enforce(connection: ASGIConnection[Any, Any, Any, Any], scope: str, key: str) -> None:
    decision = _limiters(connection)[scope].check(key)
    if not decision.allowed:
        RATE_LIMITED.labels(scope).inc()
        raise TooManyRequests(
            f"Rate limit of {decision.limit} requests reached; slow down.",
            headers={
                "Retry-After": str(max(1, round(decision.retry_after + 0.5))),
                "RateLimit-Limit": str(decision.limit),
                "RateLimit-Remaining": "0",
                "RateLimit-Reset": str(max(1, round(decision.reset_after))),
            },
        )


def client_ip(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The client's address, through trusted proxies only (services/chassis/edge.py)."""
    edge: EdgePolicy = connection.app.state.ctx.extras["edge"]
    return edge.client_address(connection.scope)


# The guards are coroutines although they never await: Litestar runs a plain
# function guard in its thread pool, a thread hop per request (and the rate
# limiters would be updated from several threads at once).


async def anonymous(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for public routes: limit per client IP."""
    _enforce(connection, "ip", client_ip(connection))


async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for user routes: a valid token (else 401), then limit per user."""
    try:
        principal = verify_token(bearer_token(connection), secret=jwt_secret())
    except Unauthorized:
        # Failed attempts count against the IP, so token guessing is limited too.
        _enforce(connection, "ip", client_ip(connection))
        raise
    connection.state.principal = principal
    _enforce(connection, "user", str(principal.user_id))


def _service(request: Request[Any, Any, Any], name: str) -> Downstream:
    downstream: Downstream = request.app.state.ctx.downstreams[name]
    return downstream


class AuthRoutes(Controller):
    path = "/api/v1"
    tags = ["accounts"]

    @post("/users", guards=[anonymous], opt={"timeout": AUTH_TIMEOUT})
    async def register(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """Create an account: ``{"email", "password", "name"}``."""
        return await forward(request, _service(request, "accounts"), "POST", "/users", "/users")

    @post("/auth/tokens", guards=[anonymous], opt={"timeout": AUTH_TIMEOUT})
    async def login(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """Sign in: ``{"email", "password"}`` for a bearer access token."""
        return await forward(request, _service(request, "accounts"), "POST", "/tokens", "/tokens")

    @get("/users/me", guards=[signed_in], opt={"timeout": AUTH_TIMEOUT})
    async def me(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        return await forward(
            request, _service(request, "accounts"), "GET", "/users/me", "/users/me"
        )


class CatalogRoutes(Controller):
    path = "/api/v1/products"
    tags = ["catalog"]
    guards = [anonymous]
    opt = {"timeout": CATALOG_TIMEOUT}

    @get("/")
    async def list_products(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """Products; ``q`` searches, ``category`` filters, ``limit``/``offset`` paginate."""
        return await forward(
            request, _service(request, "inventory"), "GET", "/products", "/products"
        )

    @get("/{product_id:int}")
    async def get_product(
        self, request: Request[Any, Any, Any], product_id: int
    ) -> Response[bytes]:
        return await forward(
            request,
            _service(request, "inventory"),
            "GET",
            f"/products/{product_id}",
            "/products/{product_id}",
        )


class OrderRoutes(Controller):
    path = "/api/v1/orders"
    tags = ["orders"]
    guards = [signed_in]
    opt = {"timeout": ORDERS_TIMEOUT}

    @post("/")
    async def place_order(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """Place an order. Requires an ``Idempotency-Key`` header; see the orders service."""
        return await forward(request, _service(request, "orders"), "POST", "/orders", "/orders")

    @get("/")
    async def list_orders(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        return await forward(request, _service(request, "orders"), "GET", "/orders", "/orders")

    @get("/{order_id:uuid}")
    async def get_order(self, request: Request[Any, Any, Any], order_id: UUID) -> Response[bytes]:
        return await forward(
            request, _service(request, "orders"), "GET", f"/orders/{order_id}", "/orders/{order_id}"
        )
