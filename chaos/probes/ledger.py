"""Probes of money and stock: orders settle, charges equal confirmed orders, stock is conserved."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from chaos import load as load_module
from chaos.context import Configuration, StackInfo, stack
from chaos.load import CATALOG_SIZE, order_body
from chaos.probes._common import get, poll


def _get_json(url: str, **kw: Any) -> Any:
    r = get(url, timeout=10, **kw)
    r.raise_for_status()
    return r.json()


def orders_settle(within: float, configuration: Configuration | None = None) -> dict[str, Any]:
    """Wait until no order is pending (every saga terminal); ``pending`` left after ``within``."""
    info = stack(configuration)
    started = time.time()
    ledger: dict[str, Any] = {}
    for _ in poll(within, 0.5):
        try:
            ledger = _get_json(f"{info.url('orders')}/orders/ledger")
        except httpx.HTTPError:
            continue
        if ledger.get("pending_count", 1) == 0:
            break
    return {
        "pending": ledger.get("pending_count"),
        "seconds": round(time.time() - started, 2),
        "ledger": ledger,
    }


def ledger_balance(
    within: float = 30.0, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Once orders settle, the money charged equals the money of confirmed orders.

    ``difference`` in cents (0 when it balances); a charge kept for a cancelled
    order, or a confirmed order never charged, shows here.
    """
    settled = orders_settle(within, configuration)
    info = stack(configuration)
    orders = settled["ledger"]
    payments = _get_json(f"{info.url('payments')}/charges/ledger")
    return {
        "pending": settled["pending"],
        "orders_confirmed_count": orders.get("confirmed_count", 0),
        "orders_confirmed_cents": orders.get("confirmed_cents", 0),
        "payments_charged_count": payments.get("charged_count", 0),
        "payments_charged_cents": payments.get("charged_cents", 0),
        "payments_refunded_count": payments.get("refunded_count", 0),
        "difference": abs(orders.get("confirmed_cents", 0) - payments.get("charged_cents", 0)),
    }


async def _stock_over_http(base: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        gate = asyncio.Semaphore(16)

        async def one(product_id: int) -> dict[str, Any]:
            async with gate:
                r = await client.get(f"/products/{product_id}/stock")
                r.raise_for_status()
                result: dict[str, Any] = r.json()
                return result

        return list(await asyncio.gather(*(one(p) for p in range(1, CATALOG_SIZE + 1))))


async def _stock_from_the_database(dsn: str) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT product_id, available, reserved, sold FROM stock"
            " WHERE product_id BETWEEN 1 AND $1 ORDER BY product_id",
            CATALOG_SIZE,
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


def _stock(info: StackInfo) -> list[dict[str, Any]]:
    """Every product's stock row: one query to the stack's own PostgreSQL when it runs one.

    One snapshot, in ~50 ms; asking inventory for each of the 320 products
    took 1-4 s (twice per experiment). A stack on an external database
    (``--database-url``, no ``postgres`` port) is asked through inventory's API.
    """
    if "postgres" in info.state.get("ports", {}):
        from services.chassis.app import database_name

        return asyncio.run(_stock_from_the_database(info.dsn(database_name("inventory"))))
    return asyncio.run(_stock_over_http(info.url("inventory")))


_STOCK_BASELINES: dict[str, int] = {}


def stock_ledger(
    baseline: str = "catalog", configuration: Configuration | None = None
) -> dict[str, Any]:
    """available + reserved + sold over the catalog, and negative columns: neither may move.

    The first call for a ``baseline`` name records the total; later calls
    compare with it (nothing restocks, so the total is constant for as long
    as the stack runs): ``difference`` is how many units appeared or vanished.
    """
    rows = _stock(stack(configuration))
    if len(rows) != CATALOG_SIZE:
        raise RuntimeError(f"{len(rows)} stock rows, not one per product ({CATALOG_SIZE})")
    total = sum(r["available"] + r["reserved"] + r["sold"] for r in rows)
    negative = [r["product_id"] for r in rows if min(r["available"], r["reserved"], r["sold"]) < 0]
    recorded = _STOCK_BASELINES.setdefault(baseline, total)
    difference = abs(total - recorded)
    return {
        "total": total,
        "baseline": recorded,
        "difference": difference,
        "reserved": sum(r["reserved"] for r in rows),
        "negative": len(negative),
        "negative_products": negative[:10],
        "violations": len(negative) + difference,
    }


async def _audit(
    load_name: str, orders_url: str, payments_url: str, inventory_url: str
) -> dict[str, Any]:
    driver = load_module.get(load_name)
    samples = [s for s in driver.samples if s.kind == "order"]
    problems: dict[str, list[str]] = {
        "lost": [],  # a 201 whose order does not exist, or is not confirmed
        "changed": [],  # the key now names another order than its 201 said
        "duplicated": [],  # orders no key accounts for (a key that made two)
        "not_terminal": [],
        "charged_but_cancelled": [],
        "confirmed_not_charged": [],
        "stock_not_settled": [],
    }
    key_to_order: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=15) as client:
        gate = asyncio.Semaphore(12)

        async def replay(sample: load_module.Sample) -> None:
            # What a client does with an answer it did not get: ask again, same key.
            headers = {**driver.users[sample.user].headers, "idempotency-key": sample.key}
            async with gate:
                r = await client.post(
                    f"{orders_url}/orders", json=order_body(sample.product_id), headers=headers
                )
            body = r.json()
            order_id = str(body.get("id") or body.get("order_id") or "")
            if order_id:
                key_to_order[sample.key] = order_id
            if sample.status == 201 and order_id != sample.order_id:
                problems["changed"].append(f"{sample.key}: {sample.order_id} -> {order_id}")

        await asyncio.gather(*(replay(s) for s in samples))

        listed: dict[str, dict[str, Any]] = {}
        for user in driver.users:
            offset = 0
            while True:
                page = (
                    await client.get(
                        f"{orders_url}/orders",
                        params={"limit": 100, "offset": offset},
                        headers=user.headers,
                    )
                ).json()["items"]
                listed.update({o["id"]: o for o in page})
                if len(page) < 100:
                    break
                offset += 100

        for sample in samples:
            if sample.status == 201:
                order = listed.get(sample.order_id)
                if order is None or order["status"] != "confirmed":
                    problems["lost"].append(sample.order_id)
        accounted = set(key_to_order.values())
        problems["duplicated"] = sorted(set(listed) - accounted)

        async def check(order: dict[str, Any]) -> None:
            async with gate:
                charge = await client.get(f"{payments_url}/charges/{order['id']}")
                reservation = await client.get(f"{inventory_url}/reservations/{order['id']}")
            charged = charge.status_code == 200 and charge.json().get("status") == "charged"
            held = reservation.status_code == 200 and reservation.json().get("status") == "reserved"
            if order["status"] == "pending":
                problems["not_terminal"].append(order["id"])
            elif order["status"] == "cancelled" and charged:
                problems["charged_but_cancelled"].append(order["id"])
            elif order["status"] == "confirmed" and not charged:
                problems["confirmed_not_charged"].append(order["id"])
            if order["status"] != "pending" and held:
                problems["stock_not_settled"].append(order["id"])

        await asyncio.gather(*(check(o) for o in listed.values()))

    statuses: dict[str, int] = {}
    for order in listed.values():
        statuses[order["status"]] = statuses.get(order["status"], 0) + 1
    return {
        "requests": len(samples),
        "answered_201": sum(1 for s in samples if s.status == 201),
        "unanswered_or_5xx": sum(1 for s in samples if s.status == 0 or s.status >= 500),
        "orders": len(listed),
        "orders_by_status": statuses,
        **{k: len(v) for k, v in problems.items()},
        "examples": {k: v[:3] for k, v in problems.items() if v},
        "violations": sum(len(v) for v in problems.values()),
    }


def audit_orders(
    load: str, settle_within: float = 30.0, configuration: Configuration | None = None
) -> dict[str, Any]:
    """Account for every order the load placed; ``violations`` counts what must never happen.

    Every key is sent again (as a client retries an answer it did not get):
    a key names exactly one order, and a 201 names the order it first said.
    Every order of the load's users is terminal; a 201 is confirmed; a
    cancelled order holds no charge; a confirmed one is charged; no finished
    order still holds reserved stock.
    """
    settled = orders_settle(settle_within, configuration)
    info = stack(configuration)
    result = asyncio.run(
        _audit(load, info.url("orders"), info.url("payments"), info.url("inventory"))
    )
    result["settled_in_s"] = settled["seconds"]
    return result
