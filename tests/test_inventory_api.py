"""The inventory service's contract: catalog reads, reservations, problem+json errors."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.harness import ServiceProcess

PROBLEM = "application/problem+json"


def _assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    for key in ("type", "title", "detail", "instance", "request_id", "trace_id"):
        assert body.get(key), f"{key} missing from {body}"
    assert "Traceback" not in r.text
    return body


def test_catalog_is_seeded_and_paginates(inventory: ServiceProcess) -> None:
    with inventory.client() as c:
        first = c.get("/products", params={"limit": 50}).json()
        second = c.get("/products", params={"limit": 50, "offset": 50}).json()
    assert first["total"] == 320
    assert len(first["items"]) == 50
    assert {p["id"] for p in first["items"]}.isdisjoint({p["id"] for p in second["items"]})
    product = first["items"][0]
    assert product["price_cents"] > 0
    assert product["sku"].startswith("RL-")


def test_search_and_category_filter(inventory: ServiceProcess) -> None:
    with inventory.client() as c:
        found = c.get("/products", params={"q": "french press"}).json()
        kitchen = c.get("/products", params={"category": "Kitchen", "limit": 100}).json()
    assert found["total"] == 4
    assert all("French Press" in p["name"] for p in found["items"])
    assert kitchen["total"] == 32
    assert {p["category"] for p in kitchen["items"]} == {"Kitchen"}


def test_reservation_lifecycle_moves_stock_and_is_idempotent(inventory: ServiceProcess) -> None:
    order = str(uuid.uuid4())
    body = {"order_id": order, "items": [{"product_id": 11, "quantity": 2}]}
    with inventory.client() as c:
        before = c.get("/products/11/stock").json()
        assert c.post("/reservations", json=body).status_code == 201
        assert c.post("/reservations", json=body).status_code == 200  # retried: same result
        mid = c.get("/products/11/stock").json()
        assert mid["available"] == before["available"] - 2
        assert mid["reserved"] == before["reserved"] + 2
        for _ in range(2):
            assert c.post(f"/reservations/{order}/commit").json()["status"] == "committed"
        after = c.get("/products/11/stock").json()
        _assert_problem(c.post(f"/reservations/{order}/release"), 409)
    assert after["sold"] == before["sold"] + 2
    assert after["reserved"] == before["reserved"]

    def total(s: dict[str, int]) -> int:
        return s["available"] + s["reserved"] + s["sold"]

    assert total(before) == total(mid) == total(after)


def test_settled_reservations_are_answered_as_they_are_stored(inventory: ServiceProcess) -> None:
    """Commit and release build their answer from the stock they moved, not a re-read."""
    lines = [
        {"product_id": 31, "quantity": 1},
        {"product_id": 12, "quantity": 2},
        {"product_id": 31, "quantity": 1},  # merged with the first line
    ]
    with inventory.client() as c:
        for action, status in (("commit", "committed"), ("release", "released")):
            order = str(uuid.uuid4())
            assert (
                c.post("/reservations", json={"order_id": order, "items": lines}).status_code == 201
            )
            settled = c.post(f"/reservations/{order}/{action}")
            assert settled.status_code == 200, settled.text
            stored = c.get(f"/reservations/{order}").json()
            assert settled.json() == stored
            assert stored["status"] == status
            assert stored["items"] == [
                {"product_id": 12, "quantity": 2},
                {"product_id": 31, "quantity": 2},
            ]
            assert c.post(f"/reservations/{order}/{action}").json() == stored  # replayed


def test_a_commit_racing_a_release_settles_the_reservation_once(inventory: ServiceProcess) -> None:
    """The status check and change are one conditional UPDATE: whichever comes second sees
    the first one's outcome, and the stock moves once."""
    product = 44
    line = {"product_id": product, "quantity": 1}
    orders = [str(uuid.uuid4()) for _ in range(4)]
    with inventory.client() as c:
        before = c.get(f"/products/{product}/stock").json()
        for order in orders:
            body = {"order_id": order, "items": [line]}
            assert c.post("/reservations", json=body).status_code == 201

        def settle(job: tuple[str, str]) -> tuple[str, int, Any]:
            order, action = job
            r = c.post(f"/reservations/{order}/{action}")
            return action, r.status_code, r.json()

        jobs = [(order, action) for order in orders for action in ("commit", "release")]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            outcomes = list(pool.map(settle, jobs))
        committed = 0
        for i, order in enumerate(orders):
            pair = outcomes[2 * i : 2 * i + 2]
            assert sorted(code for _, code, _ in pair) == [200, 409], pair
            action, _, body = next(o for o in pair if o[1] == 200)
            status = {"commit": "committed", "release": "released"}[action]
            assert body == {"order_id": order, "status": status, "items": [line]}
            assert c.get(f"/reservations/{order}").json() == body
            committed += action == "commit"
        after = c.get(f"/products/{product}/stock").json()
    assert after["sold"] == before["sold"] + committed
    assert after["reserved"] == before["reserved"]
    assert after["available"] == before["available"] - committed


def test_a_release_racing_a_reserve_of_the_same_order_gives_all_the_stock_back(
    inventory: ServiceProcess,
) -> None:
    """Whichever comes first: the reserve then the release (which waits for the reserve
    in flight and returns its lines), or the release's tombstone then a refused reserve.
    Either way the stock ends where it started."""
    product = 46
    line = {"product_id": product, "quantity": 2}
    orders = [str(uuid.uuid4()) for _ in range(6)]
    with inventory.client() as c:
        before = c.get(f"/products/{product}/stock").json()

        def call(job: tuple[str, str]) -> tuple[str, int, Any]:
            order, action = job
            if action == "reserve":
                r = c.post("/reservations", json={"order_id": order, "items": [line]})
            else:
                r = c.post(f"/reservations/{order}/release")
            return action, r.status_code, r.json()

        jobs = [(order, action) for order in orders for action in ("reserve", "release")]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            outcomes = list(pool.map(call, jobs))
        for i in range(len(orders)):
            (_, reserved, _), (_, released, body) = outcomes[2 * i : 2 * i + 2]
            assert released == 200, body
            assert body["status"] == "released"
            # The reserve came first (its lines came back) or after the tombstone (409).
            assert (reserved, body["items"]) in [(201, [line]), (409, [])], outcomes[2 * i]
        after = c.get(f"/products/{product}/stock").json()
    assert after == before


def test_release_of_unknown_order_blocks_a_late_reserve(inventory: ServiceProcess) -> None:
    order = str(uuid.uuid4())
    with inventory.client() as c:
        assert c.post(f"/reservations/{order}/release").json()["status"] == "released"
        late = c.post(
            "/reservations", json={"order_id": order, "items": [{"product_id": 3, "quantity": 1}]}
        )
    _assert_problem(late, 409)


def test_concurrent_orders_never_oversell(inventory: ServiceProcess) -> None:
    product = 25  # a limited edition: a handful in stock
    with inventory.client() as c:
        start = c.get(f"/products/{product}/stock").json()
    n = start["available"] + 6

    def order(_: int) -> int:
        body = {"order_id": str(uuid.uuid4()), "items": [{"product_id": product, "quantity": 1}]}
        return httpx.post(f"{inventory.url}/reservations", json=body, timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        codes = list(pool.map(order, range(n)))
    assert codes.count(201) == start["available"]
    assert codes.count(409) == 6
    with inventory.client() as c:
        end = c.get(f"/products/{product}/stock").json()
    assert end["available"] == 0
    assert end["reserved"] == start["reserved"] + start["available"]


def test_out_of_stock_is_a_clear_problem(inventory: ServiceProcess) -> None:
    body = {"order_id": str(uuid.uuid4()), "items": [{"product_id": 2, "quantity": 1000}]}
    problem = _assert_problem(httpx.post(f"{inventory.url}/reservations", json=body), 409)
    assert problem["type"].endswith("/out-of-stock")
    assert problem["product_id"] == 2


@pytest.mark.parametrize(
    ("refused", "status", "slug"),
    [
        ({"product_id": 15, "quantity": 1000}, 409, "out-of-stock"),  # never that many
        ({"product_id": 5000, "quantity": 1}, 422, "product-not-found"),
    ],
)
def test_a_refused_line_leaves_the_lines_before_it_untouched(
    inventory: ServiceProcess, refused: dict[str, int], status: int, slug: str
) -> None:
    """All lines or none: line 14 is reserved first (product-id order), then the refusal
    of the next line undoes it, and no reservation row is left to block a retry."""
    order = str(uuid.uuid4())
    fine = {"product_id": 14, "quantity": 2}
    with inventory.client() as c:
        before = c.get("/products/14/stock").json()
        problem = _assert_problem(
            c.post("/reservations", json={"order_id": order, "items": [refused, fine]}), status
        )
        assert problem["type"].endswith(f"/{slug}")
        assert problem["product_id"] == refused["product_id"]
        if slug == "out-of-stock":
            left = c.get("/products/15/stock").json()["available"]
            assert (problem["available"], problem["requested"]) == (left, 1000)
        assert c.get("/products/14/stock").json() == before
        _assert_problem(c.get(f"/reservations/{order}"), 404)
        retried = c.post("/reservations", json={"order_id": order, "items": [fine]})
        assert retried.status_code == 201, retried.text
        assert c.post(f"/reservations/{order}/release").status_code == 200


def test_a_line_priced_otherwise_than_the_catalog_is_refused_and_nothing_moves(
    inventory: ServiceProcess,
) -> None:
    """Orders caches prices; the reservation is where a stale one is caught: 409
    price-changed naming the catalog's price, no stock moved, no row left behind."""
    order = str(uuid.uuid4())
    with inventory.client() as c:
        price = c.get("/products/19").json()["price_cents"]
        before = {p: c.get(f"/products/{p}/stock").json() for p in (14, 19)}
        fine = {"product_id": 14, "quantity": 1}
        for stale in (
            [{"product_id": 19, "quantity": 1, "unit_price_cents": price + 100}],
            # Two lines of one product at two prices: one of them is not the catalog's.
            [
                {"product_id": 19, "quantity": 1, "unit_price_cents": price},
                {"product_id": 19, "quantity": 1, "unit_price_cents": price - 1},
            ],
        ):
            r = c.post("/reservations", json={"order_id": order, "items": [fine, *stale]})
            problem = _assert_problem(r, 409)
            assert problem["type"].endswith("/price-changed")
            assert (problem["product_id"], problem["price_cents"]) == (19, price)
            assert {p: c.get(f"/products/{p}/stock").json() for p in (14, 19)} == before
            _assert_problem(c.get(f"/reservations/{order}"), 404)
        priced = [fine, {"product_id": 19, "quantity": 2, "unit_price_cents": price}]
        r = c.post("/reservations", json={"order_id": order, "items": priced})
        assert r.status_code == 201, r.text
        assert r.json()["items"] == [
            {"product_id": 14, "quantity": 1},
            {"product_id": 19, "quantity": 2},
        ]
        assert c.post(f"/reservations/{order}/release").status_code == 200


def test_multi_item_orders_in_opposite_line_order_neither_deadlock_nor_oversell(
    inventory: ServiceProcess,
) -> None:
    """Two limited editions, each order taking one of both, half of them listing the
    lines the other way round: every order is reserved or out of stock (a deadlock
    would be a 500), and exactly as many are reserved as the scarcer product allows."""
    a, b = 125, 150
    with inventory.client() as c:
        start = {p: c.get(f"/products/{p}/stock").json() for p in (a, b)}
    fits = min(s["available"] for s in start.values())
    n = fits + 8

    def order(i: int) -> tuple[int, Any]:
        lines = [{"product_id": p, "quantity": 1} for p in ((a, b) if i % 2 else (b, a))]
        body = {"order_id": str(uuid.uuid4()), "items": lines}
        r = httpx.post(f"{inventory.url}/reservations", json=body, timeout=10)
        return r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        outcomes = list(pool.map(order, range(n)))
    codes = [code for code, _ in outcomes]
    assert codes.count(201) == fits, outcomes
    assert codes.count(409) == n - fits, outcomes
    assert all(body["type"].endswith("/out-of-stock") for code, body in outcomes if code == 409)
    with inventory.client() as c:
        for p in (a, b):
            end = c.get(f"/products/{p}/stock").json()
            assert end["available"] == start[p]["available"] - fits
            assert end["reserved"] == start[p]["reserved"] + fits


def test_reserve_stock_locks_stock_rows_in_product_order(inventory: ServiceProcess) -> None:
    """The function itself takes the lock order, whatever order its caller lists."""
    asyncio.run(_locks_in_product_order(inventory.env["DATABASE_URL"]))


async def _locks_in_product_order(dsn: str) -> None:
    low, high = 16, 17
    holder, caller, observer = [await asyncpg.connect(dsn) for _ in range(3)]
    order = uuid.uuid4()
    holding = holder.transaction()
    call: asyncio.Task[Any] | None = None
    try:
        waiter = await caller.fetchval("SELECT pg_backend_pid()")
        await holding.start()
        await holder.execute("SELECT 1 FROM stock WHERE product_id = $1 FOR UPDATE", low)
        call = asyncio.create_task(
            caller.fetchrow(
                "SELECT status, created FROM reserve_stock($1, $2, $3)", order, [high, low], [1, 1]
            )
        )
        deadline = time.monotonic() + 10
        while (
            await observer.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", waiter
            )
            != "Lock"
        ):
            assert not call.done(), call
            assert time.monotonic() < deadline, "the reserve never waited for the held row"
            await asyncio.sleep(0.01)
        # Waiting for the lower id's row, it holds no other: the higher one is free.
        async with observer.transaction():
            await observer.execute(
                "SELECT 1 FROM stock WHERE product_id = $1 FOR UPDATE NOWAIT", high
            )
        await holding.rollback()
        row = await asyncio.wait_for(call, 10)
        assert (row["status"], row["created"]) == ("reserved", True)
    finally:
        if not holder.is_closed() and holder.is_in_transaction():
            await holding.rollback()  # lets the reserve finish, whatever failed
        if call is not None:
            await asyncio.wait_for(asyncio.gather(call, return_exceptions=True), 10)
        await observer.execute("SELECT status FROM release_reservation($1)", order)
        for conn in (holder, caller, observer):
            await conn.close()


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/products/0", {}, 400),  # below the id range
        ("GET", "/products/99999999999", {}, 400),  # beyond PostgreSQL's integer
        ("GET", "/products/abc", {}, 404),  # no route takes a non-integer id
        ("GET", "/products", {"params": {"limit": 1000}}, 400),
        (
            "POST",
            "/reservations",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
        ),
        ("POST", "/reservations", {"json": {"order_id": "not-a-uuid", "items": []}}, 400),
        (
            "POST",
            "/reservations",
            {"json": {"order_id": str(uuid.uuid4()), "items": [{"product_id": 1, "quantity": 0}]}},
            400,
        ),
        (
            "POST",
            "/reservations",
            {"json": {"order_id": str(uuid.uuid4()), "items": [], "extra": 1}},
            400,
        ),
        (
            "POST",
            "/reservations",
            {"content": b"x" * 2_000_000, "headers": {"content-type": "application/json"}},
            413,
        ),
        ("DELETE", "/products/1", {}, 405),
        ("GET", "/definitely/not/here", {}, 404),
    ],
)
def test_malformed_requests_get_problem_json(
    inventory: ServiceProcess,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    r = httpx.request(method, f"{inventory.url}{path}", **kwargs)
    body = _assert_problem(r, status)
    if status == 405:
        assert "GET" in r.headers["allow"]
    if body["type"].endswith("validation-error"):
        assert body["errors"], "validation problems list what is wrong"


def test_openapi_schema_is_served_and_valid(inventory: ServiceProcess) -> None:
    from openapi_spec_validator import validate

    schema = httpx.get(f"{inventory.url}/schema/openapi.json").json()
    validate(schema)
    assert "/products/{product_id}" in schema["paths"]
    assert "/metrics" not in schema["paths"]


def test_admin_api_requires_the_token(inventory: ServiceProcess) -> None:
    r = httpx.get(f"{inventory.ops_url}/admin/faults")
    _assert_problem(r, 401)
    r = httpx.get(f"{inventory.ops_url}/admin/faults", headers={"authorization": "Bearer wrong"})
    _assert_problem(r, 401)
    r = httpx.get(
        f"{inventory.ops_url}/admin/faults", headers={"authorization": "Bearer test-admin-token"}
    )
    assert r.status_code == 200
    assert r.json() == {"faults": []}


def test_fault_flag_injects_errors_on_one_route_only(inventory: ServiceProcess) -> None:
    auth = {"authorization": "Bearer test-admin-token"}
    fault = {
        "faults": [
            {"route": "/products/{product_id}/stock", "error_rate": 1.0, "error_status": 500}
        ]
    }
    ops = httpx.Client(base_url=inventory.ops_url, timeout=10)
    with inventory.client() as c, ops:
        assert ops.put("/admin/faults", json=fault, headers=auth).status_code == 200
        try:
            _assert_problem(c.get("/products/5/stock"), 500)
            assert c.get("/products/5").status_code == 200
        finally:
            assert ops.delete("/admin/faults", headers=auth).status_code == 200
        assert c.get("/products/5/stock").status_code == 200
        bad = ops.put("/admin/faults", json={"faults": [{"error_rate": 2}]}, headers=auth)
    _assert_problem(bad, 400)


def test_stock_ledger_totals_are_conserved_by_reservations(inventory: ServiceProcess) -> None:
    def total() -> tuple[int, int]:
        ledger = httpx.get(f"{inventory.url}/stock/ledger").json()
        return ledger["available"] + ledger["reserved"] + ledger["sold"], ledger["reserved"]

    before, reserved_before = total()
    order = str(uuid.uuid4())
    body = {"order_id": order, "items": [{"product_id": 70, "quantity": 3}]}
    assert httpx.post(f"{inventory.url}/reservations", json=body).status_code == 201
    during, reserved_during = total()
    assert httpx.post(f"{inventory.url}/reservations/{order}/release").status_code == 200
    after, reserved_after = total()
    assert before == during == after
    assert reserved_during == reserved_before + 3
    assert reserved_after == reserved_before
