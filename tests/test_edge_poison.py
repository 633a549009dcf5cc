"""Poison input at the public edge: a 4xx naming the field, and no breaker ever trips.

Issue 15: ``GET /api/v1/products?q=%00`` made inventory pass a NUL byte to
PostgreSQL, which rejected it: inventory answered 500, the gateway 502, and
six such anonymous requests opened the gateway's inventory breaker for every
user. Each public route is sent the same poison many times here (more than a
breaker's minimum number of calls); every answer must be a problem+json 4xx
that names the field, every breaker must stay closed, and another user's
requests must go on working.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.harness import ADMIN_HEADERS, Platform, User, sign_up

# More than any breaker's minimum number of calls (10), so 5xx answers would open it.
REPEATS = 12
NUL = "\x00"
CONTROL = "a\x01b\x1bc\x7f"
LONG = "x" * 20_000


@dataclass(frozen=True)
class Poison:
    name: str
    method: str
    path: str
    # The field the problem must name.
    field: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    json: Any = None
    signed_in: bool = False


def _registration() -> dict[str, Any]:
    return {
        "email": f"p-{uuid.uuid4().hex[:8]}@example.com",
        "password": "long enough",
        "name": "P",
    }


def _order(**overrides: Any) -> dict[str, Any]:
    return {
        "items": [{"product_id": 5, "quantity": 1}],
        "payment_method": "pm_card_visa",
        **overrides,
    }


POISONS = [
    Poison("search-nul", "GET", "/api/v1/products", "q", params={"q": NUL}),
    Poison("search-control", "GET", "/api/v1/products", "q", params={"q": CONTROL}),
    Poison("search-long", "GET", "/api/v1/products", "q", params={"q": LONG}),
    Poison("category-nul", "GET", "/api/v1/products", "category", params={"category": "a" + NUL}),
    Poison("limit-absurd", "GET", "/api/v1/products", "limit", params={"limit": "9" * 40}),
    Poison("offset-absurd", "GET", "/api/v1/products", "offset", params={"offset": "-" + "9" * 40}),
    Poison("product-absurd", "GET", "/api/v1/products/" + "9" * 30, "product_id"),
    Poison("product-overflow", "GET", "/api/v1/products/4294967296", "product_id"),
    Poison(
        "register-email-nul",
        "POST",
        "/api/v1/users",
        "email",
        json={**_registration(), "email": f"a{NUL}@example.com"},
    ),
    Poison(
        "register-name-nul", "POST", "/api/v1/users", "name", json={**_registration(), "name": NUL}
    ),
    Poison(
        "register-name-control",
        "POST",
        "/api/v1/users",
        "name",
        json={**_registration(), "name": CONTROL},
    ),
    Poison(
        "register-name-long",
        "POST",
        "/api/v1/users",
        "name",
        json={**_registration(), "name": LONG},
    ),
    Poison(
        "login-email-nul",
        "POST",
        "/api/v1/auth/tokens",
        "email",
        json={"email": f"b{NUL}@example.com", "password": "whatever1"},
    ),
    Poison(
        "login-password-long",
        "POST",
        "/api/v1/auth/tokens",
        "password",
        json={"email": "b@example.com", "password": LONG},
    ),
    Poison(
        "order-payment-method-nul",
        "POST",
        "/api/v1/orders",
        "payment_method",
        json=_order(payment_method=f"pm{NUL}"),
        signed_in=True,
    ),
    Poison(
        "order-payment-method-control",
        "POST",
        "/api/v1/orders",
        "payment_method",
        json=_order(payment_method=CONTROL),
        signed_in=True,
    ),
    Poison(
        "order-quantity-absurd",
        "POST",
        "/api/v1/orders",
        "quantity",
        json=_order(items=[{"product_id": 5, "quantity": 10**30}]),
        signed_in=True,
    ),
    Poison(
        "order-product-absurd",
        "POST",
        "/api/v1/orders",
        "product_id",
        json=_order(items=[{"product_id": 10**30, "quantity": 1}]),
        signed_in=True,
    ),
    Poison(
        "order-float-absurd",
        "POST",
        "/api/v1/orders",
        "quantity",
        json=_order(items=[{"product_id": 5, "quantity": 1e308}]),
        signed_in=True,
    ),
    Poison(
        "orders-limit-absurd",
        "GET",
        "/api/v1/orders",
        "limit",
        params={"limit": "9" * 40},
        signed_in=True,
    ),
    # Not an order id: no route matches (and nothing reaches a service).
    Poison("order-id-absurd", "GET", "/api/v1/orders/" + "f" * 300, "No route", signed_in=True),
]


@pytest.fixture(scope="module")
def victim(platform: Platform) -> User:
    return sign_up(platform.gateway)


def breakers(platform: Platform) -> dict[str, str]:
    """Every breaker of every service that has one, ``service/dependency -> state``."""
    states = {}
    for name in ("gateway", "orders"):
        svc = platform[name]
        snapshot = httpx.get(f"{svc.ops_url}/admin/resilience", headers=ADMIN_HEADERS).json()
        for breaker in snapshot["circuit_breakers"]:
            states[f"{name}/{breaker['name']}"] = breaker["state"]
    return states


@pytest.mark.parametrize("poison", POISONS, ids=[p.name for p in POISONS])
def test_poison_is_a_4xx_naming_the_field_and_leaves_every_breaker_closed(
    platform: Platform, victim: User, poison: Poison
) -> None:
    # A fresh attacker each time, below the per-user rate limit (a 429 names no field).
    headers = dict(sign_up(platform.gateway).headers) if poison.signed_in else {}
    with httpx.Client(base_url=platform.gateway, timeout=10) as c:
        for _ in range(REPEATS):
            if poison.method == "POST":
                headers["idempotency-key"] = str(uuid.uuid4())
            r = c.request(
                poison.method, poison.path, params=poison.params, json=poison.json, headers=headers
            )
            assert 400 <= r.status_code < 500, f"{poison.name}: {r.status_code} {r.text[:300]}"
            assert r.headers["content-type"].startswith("application/problem+json")
            assert poison.field in r.text, f"{poison.name}: the problem does not name the field"
        # Another user, at the same time, is served as usual.
        assert c.get("/api/v1/products", params={"q": "kettle"}).status_code == 200
        mine = c.get("/api/v1/orders", headers=victim.headers)
        assert mine.status_code == 200, mine.text
    assert set(breakers(platform).values()) == {"closed"}, breakers(platform)
