"""The five services together, through the gateway: journeys, traces, sagas, security."""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.harness import ADMIN_HEADERS, Platform, User, sign_up, traceparent, wait_until
from tests.otlp_receiver import OtlpReceiver


@pytest.fixture(scope="module")
def user(platform: Platform) -> User:
    return sign_up(platform.gateway)


def order(
    platform: Platform,
    user: User,
    items: list[dict[str, int]],
    *,
    key: str | None = None,
    method: str = "pm_card_visa",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return httpx.post(
        f"{platform.gateway}/api/v1/orders",
        json={"items": items, "payment_method": method},
        headers={**user.headers, "idempotency-key": key or str(uuid.uuid4()), **(headers or {})},
        timeout=15,
    )


def gateway_orders_breaker(platform: Platform) -> dict[str, Any]:
    state = httpx.get(
        f"{platform['gateway'].ops_url}/admin/resilience", headers=ADMIN_HEADERS
    ).json()
    breaker: dict[str, Any] = next(b for b in state["circuit_breakers"] if b["name"] == "orders")
    return breaker


def stock(platform: Platform, product_id: int) -> dict[str, int]:
    r = httpx.get(f"{platform['inventory'].url}/products/{product_id}/stock")
    return dict(r.json())


def test_full_journey_is_one_trace_across_all_five_services(
    platform: Platform, otlp: OtlpReceiver
) -> None:
    email = f"journey-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=platform.gateway, timeout=10) as c:
        assert (
            c.post(
                "/api/v1/users", json={"email": email, "password": "s3cret-pass", "name": "J"}
            ).status_code
            == 202
        )
        token = c.post(
            "/api/v1/auth/tokens", json={"email": email, "password": "s3cret-pass"}
        ).json()["access_token"]
        auth = {"authorization": f"Bearer {token}"}
        page = c.get("/api/v1/products", params={"q": "kettle"}).json()
        product = page["items"][0]
        assert c.get(f"/api/v1/products/{product['id']}").json()["name"] == product["name"]
        header, trace_id, parent = traceparent()
        placed = c.post(
            "/api/v1/orders",
            json={"items": [{"product_id": product["id"], "quantity": 1}]},
            headers={**auth, "idempotency-key": str(uuid.uuid4()), "traceparent": header},
        )
        assert placed.status_code == 201, placed.text
        body = placed.json()
        assert body["status"] == "confirmed"
        assert body["total_cents"] == product["price_cents"]
        assert placed.headers["location"] == f"/api/v1/orders/{body['id']}"
        # The saga answers with the order as it carried it from step to step; it
        # is the order as stored, field for field (updated_at included).
        assert c.get(f"/api/v1/orders/{body['id']}", headers=auth).json() == body

    services = {"gateway", "orders", "inventory", "payments"}
    spans = otlp.wait_for(lambda s: s.trace_id == trace_id and s.kind == "SERVER", count=6)
    assert {s.service_name for s in spans} >= services
    gateway_server = next(s for s in spans if s.service_name == "gateway")
    assert gateway_server.parent_span_id == parent
    assert gateway_server.name == "POST /api/v1/orders"

    def dangling() -> list[str]:
        """Spans whose parent has not arrived (the gateway's remote parent aside)."""
        received = otlp.trace(trace_id)
        ids = {s.span_id for s in received}
        return [
            f"{s.service_name} {s.name}"
            for s in received
            if s.span_id != gateway_server.span_id and s.parent_span_id not in ids
        ]

    # Every span's parent is in the trace (one tree). Each process exports on its
    # own schedule (notifications' event spans come later still): a child may
    # arrive before its parent, so wait for the tree to close.
    wait_until(lambda: not dangling(), timeout=20, message=lambda: f"dangling: {dangling()}")
    saga_steps = [s for s in otlp.trace(trace_id) if s.name.startswith("saga ")]
    assert {s.name for s in saga_steps} >= {
        "saga reserve_inventory",
        "saga charge_payment",
        "saga commit_inventory",
    }
    assert all(s.attributes["order.id"] == body["id"] for s in saga_steps)
    assert any(
        s.service_name == "orders" and s.kind == "CLIENT" and s.attributes.get("db.system.name")
        for s in otlp.trace(trace_id)
    )
    # Payments' order lock shows (its wait is worth seeing), its unlock does not.
    locks = [
        str(s.attributes.get("db.query.text", ""))
        for s in otlp.trace(trace_id)
        if s.service_name == "payments" and "pg_advisory" in str(s.attributes.get("db.query.text"))
    ]
    assert len(locks) == 1, locks
    assert "pg_advisory_lock(" in locks[0]
    # Accounts was in the journey too, in its own traces (sign-up, sign-in, profile).
    assert otlp.wait_for(lambda s: s.service_name == "accounts" and s.name == "POST /tokens")


def test_parallel_orders_for_scarce_stock_confirm_exactly_the_stock(
    platform: Platform, user: User
) -> None:
    product = 50  # a limited edition
    start = stock(platform, product)
    n = start["available"] + 5
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(
            pool.map(
                lambda _: order(platform, user, [{"product_id": product, "quantity": 1}]), range(n)
            )
        )
    codes = [r.status_code for r in results]
    assert codes.count(201) == start["available"], codes
    assert codes.count(409) == 5, codes
    cancelled = [r.json() for r in results if r.status_code == 409]
    assert all(
        c["reason"] == "out_of_stock" and c["order"]["status"] == "cancelled" for c in cancelled
    )
    with httpx.Client(base_url=platform.gateway, headers=user.headers, timeout=10) as c:
        for answer in cancelled:
            stored = c.get(f"/api/v1/orders/{answer['order_id']}")
            assert stored.json() == answer["order"]
    end = stock(platform, product)
    assert end["available"] == 0
    assert end["sold"] == start["sold"] + start["available"]
    assert end["reserved"] == start["reserved"]
    for c in cancelled:  # no money taken for a cancelled order
        charge = httpx.get(f"{platform['payments'].url}/charges/{c['order_id']}")
        assert charge.status_code == 404 or charge.json()["status"] in ("voided", "refunded")


def test_same_idempotency_key_sequential_and_concurrent_gives_one_order_one_charge(
    platform: Platform, user: User
) -> None:
    key = str(uuid.uuid4())
    items = [{"product_id": 12, "quantity": 2}]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: order(platform, user, items, key=key), range(6)))
    codes = sorted(r.status_code for r in results)
    assert set(codes) <= {201, 409}, codes  # 409 while the first is still running
    replay = order(platform, user, items, key=key)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    first = next(r for r in results if r.status_code == 201)
    assert replay.json() == first.json()  # the replay is the first answer, field for field
    order_ids = {r.json()["id"] for r in results if r.status_code == 201} | {replay.json()["id"]}
    assert len(order_ids) == 1
    listing = httpx.get(
        f"{platform.gateway}/api/v1/orders", params={"limit": 100}, headers=user.headers
    ).json()
    assert sum(1 for o in listing["items"] if o["id"] in order_ids) == 1
    charge = httpx.get(f"{platform['payments'].url}/charges/{order_ids.pop()}").json()
    assert charge["status"] == "charged"
    different = order(platform, user, [{"product_id": 13, "quantity": 1}], key=key)
    assert different.status_code == 422


def test_missing_idempotency_key_is_400(platform: Platform, user: User) -> None:
    r = httpx.post(
        f"{platform.gateway}/api/v1/orders",
        json={"items": [{"product_id": 1, "quantity": 1}]},
        headers=user.headers,
    )
    assert r.status_code == 400
    assert r.json()["type"].endswith("/idempotency-key-missing")


def test_declined_payment_is_402_and_releases_the_stock(platform: Platform, user: User) -> None:
    before = stock(platform, 14)
    declined = "pm_card_chargeDeclined"
    r = order(platform, user, [{"product_id": 14, "quantity": 3}], method=declined)
    assert r.status_code == 402
    assert r.json()["reason"] == "payment_declined"
    # Like every other problem, the saga's carries the ids that find it in logs and traces.
    assert r.json()["request_id"] == r.headers["x-request-id"]
    assert len(r.json()["trace_id"]) == 32
    after = stock(platform, 14)
    assert after == before
    # Retried with its key, the cancelled order answers as it did, with this request's ids.
    key = str(uuid.uuid4())
    first = order(platform, user, [{"product_id": 14, "quantity": 1}], key=key, method=declined)
    replay = order(platform, user, [{"product_id": 14, "quantity": 1}], key=key, method=declined)
    assert (replay.status_code, replay.headers["idempotent-replayed"]) == (402, "true")
    ids = ("request_id", "trace_id")
    assert {k: v for k, v in replay.json().items() if k not in ids} == {
        k: v for k, v in first.json().items() if k not in ids
    }
    assert (
        replay.json()["request_id"] == replay.headers["x-request-id"] != first.json()["request_id"]
    )


def test_lost_payment_response_does_not_charge_twice(platform: Platform, user: User) -> None:
    """The charge commits, its answer is lost (orders times out), the saga asks again."""
    payments = platform["payments"].url
    payments_ops = platform["payments"].ops_url

    def replays() -> float:
        metrics = httpx.get(f"{payments}/metrics").text
        line = 'payments_total{operation="charge",outcome="replayed"} '
        found = [ln for ln in metrics.splitlines() if ln.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    replays_before = replays()
    lost = {"faults": [{"route": "/charges", "method": "POST", "hang_response": True, "limit": 1}]}
    assert (
        httpx.put(f"{payments_ops}/admin/faults", json=lost, headers=ADMIN_HEADERS).status_code
        == 200
    )
    try:
        r = order(platform, user, [{"product_id": 16, "quantity": 1}])
    finally:
        httpx.delete(f"{payments_ops}/admin/faults", headers=ADMIN_HEADERS)
    assert r.status_code == 201, r.text
    # One payment row per order (the primary key), charged once: the second
    # attempt was answered from the first. The ledger is shared with sagas of
    # earlier tests that may still be compensating, so it is checked per order.
    payment = httpx.get(f"{payments}/charges/{r.json()['id']}").json()
    assert payment["status"] == "charged"
    assert replays() >= replays_before + 1  # other sagas may replay too


def test_payments_down_cancels_orders_and_catalog_keeps_working(
    platform: Platform, user: User
) -> None:
    payments = platform["payments"]
    before = stock(platform, 15)
    failures_before = gateway_orders_breaker(platform)["failures_total"]
    payments.stop()
    try:
        r = order(platform, user, [{"product_id": 15, "quantity": 1}])
        assert r.status_code == 503, r.text
        assert r.json()["reason"] in ("payment_unavailable",)
        assert stock(platform, 15) == before, "the reservation was released"
        for _ in range(20):
            assert httpx.get(f"{platform.gateway}/api/v1/products/15").status_code == 200

        # Orders keep failing until the payments breaker opens; then they fail fast.
        def breaker_state() -> str:
            state = httpx.get(
                f"{platform['orders'].ops_url}/admin/resilience", headers=ADMIN_HEADERS
            ).json()
            return str(
                next(b for b in state["circuit_breakers"] if b["name"] == "payments")["state"]
            )

        def failing_until_open() -> bool:
            assert order(platform, user, [{"product_id": 15, "quantity": 1}]).status_code == 503
            return breaker_state() == "open"

        wait_until(failing_until_open, timeout=30, interval=0.0, message="breaker never opened")
        t0 = time.monotonic()
        r = order(platform, user, [{"product_id": 15, "quantity": 1}])
        assert r.status_code == 503
        assert time.monotonic() - t0 < 0.5, "an open breaker fails fast"
        metrics = httpx.get(f"{platform['orders'].url}/metrics").text
        assert 'resilience_circuit_breaker_state{breaker="payments",state="open"} 1.0' in metrics
        assert stock(platform, 15) == before
        # Orders answered with final outcomes (cancelled orders): the gateway
        # neither retried them nor counted orders as failing.
        orders_breaker = gateway_orders_breaker(platform)
        assert orders_breaker["state"] == "closed"
        assert orders_breaker["failures_total"] == failures_before
    finally:
        payments.start()
    # Recovery needs no operator: the breakers (orders->payments, and the
    # gateway's gateway->orders, which saw the 503s) close through half-open.
    wait_until(
        lambda: order(platform, user, [{"product_id": 15, "quantity": 1}]).status_code == 201,
        timeout=30,
        interval=0.5,
        message="orders never recovered after payments came back",
    )
