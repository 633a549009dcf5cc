"""Orders prices from a cache of the catalog; a changed price never reaches a charge.

services/orders/catalog.py keeps each product's price for a while; the
reservation carries it and inventory refuses one the catalog no longer has.
Against the platform, with a price changed in inventory's database as an
operator would.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import Platform, User, sign_up

PRODUCT = 27  # no other test orders it: its price changes here


def _lookups(platform: Platform) -> dict[str, float]:
    text = httpx.get(f"{platform['orders'].url}/metrics").text
    return {
        s.labels["source"]: s.value
        for family in text_string_to_metric_families(text)
        if family.name == "orders_price_lookups"
        for s in family.samples
        if s.name == "orders_price_lookups_total"
    }


def _set_price(platform: Platform, cents: int) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(platform["inventory"].env["DATABASE_URL"])
        try:
            await conn.execute("UPDATE products SET price_cents = $2 WHERE id = $1", PRODUCT, cents)
        finally:
            await conn.close()

    asyncio.run(run())


def _place(platform: Platform, user: User) -> httpx.Response:
    return httpx.post(
        f"{platform.gateway}/api/v1/orders",
        json={"items": [{"product_id": PRODUCT, "quantity": 1}], "payment_method": "pm_card_visa"},
        headers={**user.headers, "idempotency-key": str(uuid.uuid4())},
        timeout=15,
    )


def _stock(platform: Platform) -> dict[str, Any]:
    return dict(httpx.get(f"{platform['inventory'].url}/products/{PRODUCT}/stock").json())


def test_a_cached_price_is_used_until_the_catalog_changes_it_then_nothing_is_charged(
    platform: Platform,
) -> None:
    user = sign_up(platform.gateway)
    price = httpx.get(f"{platform['inventory'].url}/products/{PRODUCT}").json()["price_cents"]
    first = _place(platform, user)
    assert first.status_code == 201, first.text
    looked_up = _lookups(platform)
    second = _place(platform, user)
    assert second.status_code == 201, second.text
    after = _lookups(platform)
    assert after["cache"] == looked_up["cache"] + 1, "the second order's price came from the cache"
    assert after["catalog"] == looked_up["catalog"], "and not from the catalog"
    assert second.json()["items"][0]["unit_price_cents"] == price

    _set_price(platform, price + 500)
    try:
        stock = _stock(platform)
        stale = _place(platform, user)
        assert stale.status_code == 409, stale.text
        assert stale.headers["content-type"].startswith("application/problem+json")
        problem = stale.json()
        assert problem["type"].endswith("/price-changed")
        assert (problem["order"]["status"], problem["reason"]) == ("cancelled", "price_changed")
        assert _stock(platform) == stock, "nothing reserved stays reserved"
        charge = httpx.get(f"{platform['payments'].url}/charges/{problem['order_id']}")
        assert charge.status_code == 404, "the payment service never heard of the order"

        fresh = _place(platform, user)
        assert fresh.status_code == 201, fresh.text
        order = fresh.json()
        assert order["items"][0]["unit_price_cents"] == price + 500
        assert order["total_cents"] == price + 500
    finally:
        _set_price(platform, price)
