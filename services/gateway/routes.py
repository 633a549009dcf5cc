"""The public API, ``/api/v1``: authentication, rate limits, budgets, routing.

Each route states its time budget (``opt["timeout"]``, enforced by the
chassis' deadline middleware and forwarded downstream) and whether it needs a
signed-in user (``guards``); the handler only names the service and path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from litestar import Controller, HttpMethod, Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import SecurityScheme
from litestar.params import SkipValidation
from prometheus_client import Counter

from services.accounts.models import (
    Credentials,
    Registration,
    RegistrationAccepted,
    Token,
    User,
)
from services.chassis.auth import Unauthorized, bearer_token, jwt_secret, verify_token
from services.chassis.edge import EdgePolicy, network_key
from services.chassis.errors import ProblemError
from services.chassis.http_client import Downstream
from services.chassis.openapi import problems, success
from services.chassis.validation import PageLimit, PageOffset
from services.gateway.proxy import forward
from services.gateway.ratelimit import RateLimiter
from services.inventory.models import Category, PathProductId, Product, ProductPage, SearchTerm
from services.orders.models import IdempotencyKeyHeader, Order, OrderPage, PlaceOrder
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
for _scope in ("user", "ip", "account", "network"):
    RATE_LIMITED.labels(_scope)


class TooManyRequests(ProblemError):
    status = 429
    type_slug = "rate-limited"
    title = "Too many requests"


@dataclass(frozen=True)
class Limits:
    """The gateway's rate limiters and how it tells clients apart.

    Built once per app from its settings (``services/gateway/app.py``); handlers
    declare ``limits: SkipValidation[Limits]`` (a typed dependency, as orders
    declares its service); the guards, which Litestar injects nothing into,
    find it with :meth:`of`, the one place that names where it is kept.
    """

    edge: EdgePolicy
    user: RateLimiter
    ip: RateLimiter
    network: RateLimiter
    account: RateLimiter

    @classmethod
    def of(cls, connection: ASGIConnection[Any, Any, Any, Any]) -> Limits:
        limits: Limits = connection.app.state.limits
        return limits

    @staticmethod
    def enforce(limiter: RateLimiter, scope: str, key: str) -> None:
        """Count one request of ``key``; 429 (``scope`` names the limit) when over."""
        decision = limiter.check(key)
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

    def client_ip(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        """The client's address (through trusted proxies only), an IPv6 one as its /64."""
        return network_key(self.edge.client_address(connection.scope))

    def credentials(self, connection: ASGIConnection[Any, Any, Any, Any], email: str) -> None:
        """Sign-in and sign-up, on top of the per-IP limit of every public route.

        Each costs an Argon2 hash, and each is a guess: per client network and per
        account, both far below the general limit (``REDLINE_CREDENTIAL_*``). The
        account's bucket is counted by e-mail whether or not the account exists,
        so a 429 says nothing about which addresses are registered.
        """
        self.enforce(self.network, "network", self.client_ip(connection))
        self.enforce(self.account, "account", email.strip().lower())


class _EdgeRoute(HTTPRouteHandler):
    """A route handler whose guards get the handler itself, not a copy.

    Litestar passes each guard ``copy(handler)`` (a shallow copy of a large
    object, ~25 µs per request on the gateway's profile); these guards never
    read or change the handler.
    """

    async def authorize_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        for guard in self.resolve_guards():
            await guard(connection, self)  # type: ignore[misc]


def get(path: str, **kwargs: Any) -> _EdgeRoute:
    """``litestar.get`` for the gateway's routes."""
    return _EdgeRoute(path, http_method=HttpMethod.GET, **kwargs)


def post(path: str, **kwargs: Any) -> _EdgeRoute:
    """``litestar.post`` for the gateway's routes."""
    return _EdgeRoute(path, http_method=HttpMethod.POST, **kwargs)


# The guards are coroutines although they never await: Litestar runs a plain
# function guard in its thread pool, a thread hop per request (and the rate
# limiters would be updated from several threads at once).


async def anonymous(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for public routes: limit per client IP."""
    limits = Limits.of(connection)
    limits.enforce(limits.ip, "ip", limits.client_ip(connection))


async def signed_in(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard for user routes: a valid token (else 401), then limit per user."""
    limits = Limits.of(connection)
    try:
        principal = verify_token(bearer_token(connection), secret=jwt_secret())
    except Unauthorized:
        # Failed attempts count against the IP, so token guessing is limited too.
        limits.enforce(limits.ip, "ip", limits.client_ip(connection))
        raise
    connection.state.principal = principal
    limits.enforce(limits.user, "user", str(principal.user_id))


def _service(request: Request[Any, Any, Any], name: str) -> Downstream:
    downstream: Downstream = request.app.state.ctx.downstreams[name]
    return downstream


# The public API's documentation: what each route answers besides its success,
# on top of the 400/503/504 every operation may (services/chassis/openapi.py).
EDGE = problems(429, 502)
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
SECURITY_SCHEMES = {
    "bearer": SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="An access token from POST /api/v1/auth/tokens.",
    )
}


@dataclass(frozen=True)
class Proxied:
    """A public route and the service operation it forwards to."""

    service: str
    method: str
    path: str  # the service's route template


# Public route -> service operation; the handlers forward by it and
# tests/test_fuzz.py holds the public schema to the services' by it.
PROXIED: dict[tuple[str, str], Proxied] = {
    ("POST", "/api/v1/users"): Proxied("accounts", "POST", "/users"),
    ("POST", "/api/v1/auth/tokens"): Proxied("accounts", "POST", "/tokens"),
    ("GET", "/api/v1/users/me"): Proxied("accounts", "GET", "/users/me"),
    ("GET", "/api/v1/products"): Proxied("inventory", "GET", "/products"),
    ("GET", "/api/v1/products/{product_id}"): Proxied("inventory", "GET", "/products/{product_id}"),
    ("POST", "/api/v1/orders"): Proxied("orders", "POST", "/orders"),
    ("GET", "/api/v1/orders"): Proxied("orders", "GET", "/orders"),
    ("GET", "/api/v1/orders/{order_id}"): Proxied("orders", "GET", "/orders/{order_id}"),
    ("GET", "/api/v1/notifications"): Proxied("notifications", "GET", "/notifications"),
}


async def _forward(
    request: Request[Any, Any, Any], public: str, **path_params: Any
) -> Response[bytes]:
    target = PROXIED[(request.method, public)]
    return await forward(
        request,
        _service(request, target.service),
        target.method,
        target.path.format(**path_params),
        target.path,
    )


class AuthRoutes(Controller):
    path = "/api/v1"
    tags = ["accounts"]

    @post(
        "/users",
        guards=[anonymous],
        opt={"timeout": AUTH_TIMEOUT},
        status_code=202,
        responses={
            202: success(RegistrationAccepted, "The same answer whether the address was free."),
            **EDGE,
        },
        security=[],
    )
    async def register(
        self, request: Request[Any, Any, Any], data: Registration, limits: SkipValidation[Limits]
    ) -> Response[bytes]:
        """Create an account; sign in for its id. Whether the address had one is not said."""
        limits.credentials(request, data.email)
        return await _forward(request, "/api/v1/users")

    @post(
        "/auth/tokens",
        guards=[anonymous],
        opt={"timeout": AUTH_TIMEOUT},
        status_code=200,
        responses={200: success(Token, "Signed in."), **problems(401), **EDGE},
        security=[],
    )
    async def login(
        self, request: Request[Any, Any, Any], data: Credentials, limits: SkipValidation[Limits]
    ) -> Response[bytes]:
        """Sign in for a bearer access token."""
        limits.credentials(request, data.email)
        return await _forward(request, "/api/v1/auth/tokens")

    @get(
        "/users/me",
        guards=[signed_in],
        opt={"timeout": AUTH_TIMEOUT},
        responses={
            200: success(User, "The caller."),
            **problems(401, 404),
            **EDGE,
        },
        security=BEARER,
    )
    async def me(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        """The caller's profile."""
        return await _forward(request, "/api/v1/users/me")


class CatalogRoutes(Controller):
    path = "/api/v1/products"
    tags = ["catalog"]
    guards = [anonymous]
    opt = {"timeout": CATALOG_TIMEOUT}
    security = []

    @get("/", responses={200: success(ProductPage, "A page of products."), **EDGE})
    async def list_products(
        self,
        request: Request[Any, Any, Any],
        q: SearchTerm = None,
        category: Category = None,
        limit: PageLimit = 20,
        offset: PageOffset = 0,
    ) -> Response[bytes]:
        """Products; ``q`` searches, ``category`` filters, ``limit``/``offset`` paginate."""
        return await _forward(request, "/api/v1/products")

    @get(
        "/{product_id:int}",
        responses={200: success(Product, "The product."), **problems(404), **EDGE},
    )
    async def get_product(
        self, request: Request[Any, Any, Any], product_id: PathProductId
    ) -> Response[bytes]:
        """One product, with its available stock."""
        return await _forward(request, "/api/v1/products/{product_id}", product_id=product_id)


class OrderRoutes(Controller):
    path = "/api/v1/orders"
    tags = ["orders"]
    guards = [signed_in]
    opt = {"timeout": ORDERS_TIMEOUT}
    security = BEARER

    @post(
        "/",
        status_code=201,
        responses={
            201: success(Order, "Confirmed."),
            202: success(Order, "Accepted, still completing: poll the order."),
            **problems(401, 402, 409, 422),
            **EDGE,
        },
    )
    async def place_order(
        self,
        request: Request[Any, Any, Any],
        data: PlaceOrder,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response[bytes]:
        """Place an order. Retrying with the same ``Idempotency-Key`` replays the first answer."""
        return await _forward(request, "/api/v1/orders")

    @get(
        "/",
        responses={
            200: success(OrderPage, "The caller's orders."),
            **problems(401),
            **EDGE,
        },
    )
    async def list_orders(
        self, request: Request[Any, Any, Any], limit: PageLimit = 20, offset: PageOffset = 0
    ) -> Response[bytes]:
        """The caller's orders, newest first."""
        return await _forward(request, "/api/v1/orders")

    @get(
        "/{order_id:uuid}",
        responses={
            200: success(Order, "The order."),
            **problems(401, 404),
            **EDGE,
        },
    )
    async def get_order(self, request: Request[Any, Any, Any], order_id: UUID) -> Response[bytes]:
        """One of the caller's orders."""
        return await _forward(request, "/api/v1/orders/{order_id}", order_id=order_id)
