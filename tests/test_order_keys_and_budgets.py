"""Orders: Idempotency-Key life cycle, the saga's compensation budget, merged order lines.

Issue 15, item 6. The keys' store functions run against a real PostgreSQL; the
rest against the platform (orders is called directly where a test needs to set
its deadline, or to kill it at a precise moment).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from services.chassis.db import Database
from services.chassis.migrations import migrate
from services.orders import store
from services.orders.app import MIGRATIONS
from tests.harness import ADMIN_HEADERS, Platform, User, sign_up, wait_until


@pytest.fixture(scope="module")
def user(platform: Platform) -> User:
    return sign_up(platform.gateway)


def _sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def _stock(platform: Platform, product_id: int) -> dict[str, int]:
    return dict(httpx.get(f"{platform['inventory'].url}/products/{product_id}/stock").json())


def _place_directly(
    platform: Platform, user: User, key: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    """POST /orders to the orders service itself (no gateway budget, no gateway retries)."""
    return httpx.post(
        f"{platform['orders'].url}/orders",
        json=body,
        headers={**user.headers, "idempotency-key": key, **headers},
        timeout=20,
    )


# -- keys, in the store -------------------------------------------------------------


@pytest.fixture(scope="module")
def orders_dsn(new_database: Callable[[str], str]) -> str:
    dsn = new_database("orders_keys")

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, MIGRATIONS)
        finally:
            await conn.close()

    asyncio.run(run())
    return dsn


async def _with_db(dsn: str, work: Callable[[Database], Any]) -> Any:
    db = Database(dsn, name="orders-keys-test", min_size=1, max_size=2)
    await db.start(wait=True)
    try:
        return await work(db)
    finally:
        await db.close()


def test_an_expired_key_is_claimed_anew(orders_dsn: str) -> None:
    """Keys are kept 24 hours: after that the same key is a new request, not a replay."""
    user_id, key = uuid.uuid4(), "expired-key"

    async def work(db: Database) -> tuple[store.KeyClaim, store.KeyClaim]:
        first = await store.claim_key(db, user_id, key, "digest-one", lease_seconds=60)
        await db.execute(
            "UPDATE idempotency_keys SET order_id = gen_random_uuid(), "
            "expires_at = now() - interval '1 second' WHERE user_id = $1 AND key = $2",
            user_id,
            key,
        )
        again = await store.claim_key(db, user_id, key, "digest-two", lease_seconds=60)
        return first, again

    first, again = asyncio.run(_with_db(orders_dsn, work))
    assert first.state is store.KeyState.NEW
    assert again.state is store.KeyState.NEW, again


def test_a_claim_abandoned_without_an_order_is_claimed_anew_once_its_lease_ran_out(
    orders_dsn: str,
) -> None:
    user_id, key = uuid.uuid4(), "abandoned-key"

    async def work(db: Database) -> tuple[store.KeyClaim, store.KeyClaim]:
        await store.claim_key(db, user_id, key, "digest", lease_seconds=60)
        held = await store.claim_key(db, user_id, key, "digest", lease_seconds=60)
        await db.execute(
            "UPDATE idempotency_keys SET claimed_until = now() - interval '1 second' "
            "WHERE user_id = $1 AND key = $2",
            user_id,
            key,
        )
        return held, await store.claim_key(db, user_id, key, "digest", lease_seconds=60)

    held, again = asyncio.run(_with_db(orders_dsn, work))
    assert held.state is store.KeyState.IN_PROGRESS
    assert again.state is store.KeyState.NEW


def test_a_claim_taken_over_cannot_create_a_second_order(orders_dsn: str) -> None:
    """The first claimant, slow rather than dead, must not add an order to a re-claimed key."""
    user_id, key = uuid.uuid4(), "taken-over-key"
    items = [store.Priced(1, "Kettle", 1, 1000)]

    async def work(db: Database) -> tuple[bool, bool, int]:
        slow = await store.claim_key(db, user_id, key, "digest", lease_seconds=60)
        await db.execute(
            "UPDATE idempotency_keys SET claimed_until = now() - interval '1 second' "
            "WHERE user_id = $1 AND key = $2",
            user_id,
            key,
        )
        fresh = await store.claim_key(db, user_id, key, "digest", lease_seconds=60)
        outcomes = []
        for claim in (slow, fresh):
            created = await store.create_order(
                db,
                order_id=uuid.uuid4(),
                user_id=user_id,
                key=key,
                claim=claim.token,
                items=items,
                payment_method="pm_card_visa",
                owner="test",
                lease_seconds=5,
            )
            outcomes.append(created is not None)
        orders = await db.fetchval("SELECT count(*) FROM orders WHERE user_id = $1", user_id)
        return outcomes[0], outcomes[1], int(orders)

    slow_created, fresh_created, orders = asyncio.run(_with_db(orders_dsn, work))
    assert (slow_created, fresh_created, orders) == (False, True, 1)


# -- keys, in the running service ---------------------------------------------------


def test_a_key_whose_order_could_not_be_created_is_released(platform: Platform, user: User) -> None:
    """The database refuses the order after the key was claimed: a retry runs again, no 409."""
    key = str(uuid.uuid4())
    # PostgreSQL text cannot hold NUL: the order's INSERT fails after the claim.
    body = {"items": [{"product_id": 3, "quantity": 1}], "payment_method": "pm_\u0000visa"}
    first = _place_directly(platform, user, key, body)
    again = _place_directly(platform, user, key, body)
    assert first.status_code >= 400, first.text
    assert again.status_code == first.status_code, again.text
    assert "idempotency-key-in-progress" not in again.text


def test_a_key_claimed_by_a_process_that_died_is_released_after_its_lease(
    platform: Platform, user: User
) -> None:
    """orders dies between claiming the key and creating the order: the key is free again."""
    orders, inventory = platform["orders"], platform["inventory"]
    dsn = orders.env["DATABASE_URL"]
    key = str(uuid.uuid4())
    # Orders asks the catalog for a price it has not cached (services/orders/
    # catalog.py): no other test orders product 4, so pricing it hangs below.
    body = {"items": [{"product_id": 4, "quantity": 1}]}
    slow_catalog = {"faults": [{"route": "/products/{product_id}", "hang": True}]}
    assert (
        httpx.put(
            f"{inventory.ops_url}/admin/faults", json=slow_catalog, headers=ADMIN_HEADERS
        ).status_code
        == 200
    )

    def place_and_lose_the_answer() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the process dies under the request
            _place_directly(platform, user, key, body)

    client = threading.Thread(target=place_and_lose_the_answer)
    try:
        client.start()
        wait_until(
            lambda: _sql(dsn, "SELECT 1 FROM idempotency_keys WHERE key = $1", key),
            message="the key was never claimed",
        )
        orders.kill()  # SIGKILL while pricing: the key is claimed, no order exists
        client.join(timeout=15)
        assert _sql(
            dsn, "SELECT 1 FROM idempotency_keys WHERE key = $1 AND order_id IS NULL", key
        ), "an order was created: product 4's price came from the cache, not the hung catalog"
    finally:
        httpx.delete(f"{inventory.ops_url}/admin/faults", headers=ADMIN_HEADERS)
    orders.start()

    def placed() -> httpx.Response | None:
        r = _place_directly(platform, user, key, body)
        assert r.status_code in (201, 409), r.text
        return r if r.status_code == 201 else None

    r = wait_until(placed, timeout=20, interval=0.5, message="the key stayed in progress")
    assert r.json()["status"] == "confirmed"


def test_expired_keys_are_purged_by_the_recovery_loop(platform: Platform) -> None:
    dsn = platform["orders"].env["DATABASE_URL"]
    key = f"expired-{uuid.uuid4()}"
    _sql(
        dsn,
        "INSERT INTO idempotency_keys (user_id, key, request_hash, expires_at) "
        "VALUES ($1, $2, 'digest', now() - interval '1 second')",
        uuid.uuid4(),
        key,
    )
    wait_until(
        lambda: not _sql(dsn, "SELECT 1 FROM idempotency_keys WHERE key = $1", key),
        timeout=10,
        message="the expired key was never purged",
    )


# -- the saga's compensation budget -------------------------------------------------


def test_compensation_runs_on_its_own_budget_after_the_charge_used_the_deadline(
    platform: Platform, user: User
) -> None:
    """The charge times out at the request's deadline; refund and release still run at once."""
    payments, payments_ops = platform["payments"].url, platform["payments"].ops_url
    product = 21
    before = _stock(platform, product)
    slow_charge = {"faults": [{"route": "/charges", "method": "POST", "latency_ms": 4000}]}
    assert (
        httpx.put(
            f"{payments_ops}/admin/faults", json=slow_charge, headers=ADMIN_HEADERS
        ).status_code
        == 200
    )
    try:
        r = _place_directly(
            platform,
            user,
            str(uuid.uuid4()),
            {"items": [{"product_id": product, "quantity": 1}]},
            **{"x-deadline-remaining-ms": "1500"},
        )
    finally:
        httpx.delete(f"{payments_ops}/admin/faults", headers=ADMIN_HEADERS)
    assert r.status_code == 503, r.text
    body = r.json()
    assert (body["order"]["status"], body["reason"]) == ("cancelled", "payment_unavailable")
    assert _stock(platform, product) == before, "the reservation was released before the answer"
    charge = httpx.get(f"{payments}/charges/{body['order_id']}")
    assert charge.status_code == 200, charge.text
    assert charge.json()["status"] in ("voided", "refunded")


# -- merged order lines -------------------------------------------------------------


def test_lines_of_one_product_merging_above_the_limit_are_a_422_naming_the_field(
    platform: Platform, user: User
) -> None:
    """20 lines of 100 are each valid; together 2,000 units, above inventory's 1,000."""
    r = httpx.post(
        f"{platform.gateway}/api/v1/orders",
        json={"items": [{"product_id": 22, "quantity": 100}] * 20},
        headers={**user.headers, "idempotency-key": str(uuid.uuid4())},
        timeout=15,
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["errors"][0]["key"] == "items"
    assert "22" in problem["errors"][0]["message"]


def test_books_balance_with_no_payment_left_half_way(platform: Platform) -> None:
    """Run last in this module: whatever the tests above did, no payment is left pending."""

    def settled() -> dict[str, int] | None:
        orders = httpx.get(f"{platform['orders'].url}/orders/ledger").json()
        return None if orders["pending_count"] else orders

    orders = wait_until(settled, timeout=30, message="orders stayed pending")
    payments = httpx.get(f"{platform['payments'].url}/charges/ledger").json()
    assert payments.get("pending_count", 0) == 0, payments
    assert payments.get("refunding_count", 0) == 0, payments
    assert payments.get("charged_cents", 0) == orders["confirmed_cents"]
