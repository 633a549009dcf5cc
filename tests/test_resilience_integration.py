"""The resilience primitives against a real slow dependency: orders calling payments."""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import (
    ADMIN_HEADERS,
    PREDICTABLE_PAYMENTS,
    Platform,
    User,
    free_port,
    sign_up,
    wait_until,
)
from tests.otlp_receiver import OtlpReceiver

BULKHEAD = 4
SLOW_MS = 3000


@pytest.fixture(scope="module")
def platform(
    new_database: Callable[[str], str], otlp: OtlpReceiver, logs_dir: Path
) -> Iterator[Platform]:
    """The platform, with orders->payments guarded tightly enough to see every guard act."""
    p = Platform.build(
        databases=new_database,
        logs=logs_dir / f"resilience-{free_port()}",
        otlp_endpoint=otlp.endpoint,
        extra_env={
            "payments": PREDICTABLE_PAYMENTS,
            "orders": {
                "REDLINE_PAYMENTS_MAX_CONCURRENT": str(BULKHEAD),
                "REDLINE_PAYMENTS_TIMEOUT_SECONDS": "0.5",
                "REDLINE_PAYMENTS_RETRY_MAX_ATTEMPTS": "1",
                "REDLINE_PAYMENTS_BREAKER_MINIMUM_CALLS": "5",
                "REDLINE_PAYMENTS_BREAKER_WINDOW": "10",
                "REDLINE_PAYMENTS_BREAKER_WAIT_SECONDS": "2",
            },
        },
    ).start()
    yield p
    p.stop()


def _order(platform: Platform, user: User) -> httpx.Response:
    return httpx.post(
        f"{platform['orders'].url}/orders",
        json={"items": [{"product_id": 60, "quantity": 1}]},
        headers={**user.headers, "idempotency-key": str(uuid.uuid4())},
        timeout=30,
    )


def _metric(text: str, series: str) -> float:
    m = re.search(re.escape(series) + r" ([0-9.e+-]+)", text)
    return float(m.group(1)) if m else 0.0


def _payments_guard(platform: Platform) -> dict[str, dict[str, object]]:
    state = httpx.get(
        f"{platform['orders'].ops_url}/admin/resilience", headers=ADMIN_HEADERS
    ).json()
    return {
        "breaker": next(b for b in state["circuit_breakers"] if b["name"] == "payments"),
        "bulkhead": next(b for b in state["bulkheads"] if b["name"] == "payments"),
    }


def test_slow_payments_are_capped_cut_off_and_recovered_from(platform: Platform) -> None:
    user = sign_up(platform.gateway)
    orders, payments = platform["orders"].url, platform["payments"].ops_url
    slow = {"faults": [{"route": "/charges", "method": "POST", "latency_ms": SLOW_MS}]}
    assert (
        httpx.put(f"{payments}/admin/faults", json=slow, headers=ADMIN_HEADERS).status_code == 200
    )

    # 1. A flood: the bulkhead lets BULKHEAD calls reach payments at a time.
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, int(_payments_guard(platform)["bulkhead"]["in_flight"]))  # type: ignore[call-overload]

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda _: _order(platform, user).status_code, range(20)))
    finally:
        stop.set()
        watcher.join()
    # 503: cancelled at once; 202: the charge timed out, its refund waits for a
    # free slot (the recovery loop finishes it): never a confirmed order.
    assert set(codes) <= {503, 202}, codes
    assert 1 <= peak <= BULKHEAD, f"in flight peaked at {peak}, the bulkhead holds {BULKHEAD}"
    metrics = httpx.get(f"{orders}/metrics").text
    assert _metric(metrics, 'resilience_bulkhead_rejections_total{bulkhead="payments"}') > 0
    assert _metric(metrics, 'resilience_bulkhead_capacity{bulkhead="payments"}') == BULKHEAD

    # 2. The timeouts open the breaker; calls now fail fast.
    def opened() -> bool:
        if _payments_guard(platform)["breaker"]["state"] == "open":
            return True
        _order(platform, user)  # more slow calls, until the window judges
        return False

    wait_until(opened, timeout=30, interval=0.0, message="the breaker never opened")
    t0 = time.monotonic()
    fast = _order(platform, user)
    fail_fast = time.monotonic() - t0
    assert fast.status_code == 503
    assert fail_fast < 1.0, (
        f"an open breaker answered in {fail_fast:.2f} s; the slow call takes {SLOW_MS / 1000} s"
    )
    metrics = httpx.get(f"{orders}/metrics").text
    assert (
        _metric(metrics, 'resilience_circuit_breaker_state{breaker="payments",state="open"}') == 1
    )
    assert (
        _metric(
            metrics, 'resilience_circuit_breaker_calls_total{breaker="payments",outcome="rejected"}'
        )
        >= 1
    )
    timeouts = [
        line
        for line in metrics.splitlines()
        if line.startswith("http_client_request_duration_seconds_count{")
        and 'peer_service="payments"' in line
        and 'error_type="ReadTimeout"' in line
    ]
    assert timeouts, "the slow calls are recorded as client timeouts to payments"

    # 3. Payments recovers: the breaker goes half-open after its wait, trials pass, it closes.
    assert httpx.delete(f"{payments}/admin/faults", headers=ADMIN_HEADERS).status_code == 200
    wait_until(
        lambda: _order(platform, user).status_code == 201,
        timeout=20,
        interval=0.3,
        message="orders never succeeded again",
    )
    wait_until(
        lambda: (
            _order(platform, user).status_code == 201
            and _payments_guard(platform)["breaker"]["state"] == "closed"
        ),
        timeout=20,
        interval=0.1,
        message="the breaker never closed",
    )
    metrics = httpx.get(f"{orders}/metrics").text
    for frm, to in (("closed", "open"), ("open", "half_open"), ("half_open", "closed")):
        series = f'resilience_circuit_breaker_transitions_total{{breaker="payments",from_state="{frm}",to_state="{to}"}}'
        assert _metric(metrics, series) >= 1, series


def test_operators_can_force_a_breaker_and_reset_it(platform: Platform) -> None:
    user = sign_up(platform.gateway)
    orders = platform["orders"].ops_url
    r = httpx.post(f"{orders}/admin/resilience/breakers/payments/force-open", headers=ADMIN_HEADERS)
    assert r.json()["state"] == "forced_open"
    try:
        placed = _order(platform, user)
        assert placed.status_code == 503
        assert placed.json()["reason"] == "payment_unavailable"
    finally:
        r = httpx.post(f"{orders}/admin/resilience/breakers/payments/reset", headers=ADMIN_HEADERS)
    assert r.json()["state"] == "closed"
    assert _order(platform, user).status_code == 201
    bad = httpx.post(f"{orders}/admin/resilience/breakers/payments/explode", headers=ADMIN_HEADERS)
    assert bad.status_code == 400
    unknown = httpx.post(f"{orders}/admin/resilience/breakers/nope/reset", headers=ADMIN_HEADERS)
    assert unknown.status_code == 404
    assert httpx.post(f"{orders}/admin/resilience/breakers/payments/reset").status_code == 401
