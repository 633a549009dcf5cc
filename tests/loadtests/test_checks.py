"""Which answers count as the platform working, and how the others read in Locust's table."""

from __future__ import annotations

import json

from loadtests import checks
from loadtests.checks import IN_PROGRESS, ORDER_PLACED, OUT_OF_STOCK, PROBLEM_BASE, verdict


def _problem(slug: str, status: int, title: str, detail: str) -> bytes:
    return json.dumps(
        {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    ).encode()


SOLD_OUT = _problem("out-of-stock", 409, "Out of stock", "An item in the order is out of stock.")
LOST = _problem("order-conflict", 409, "Order conflict", "The stock reservation was lost.")
DECLINED = _problem("payment-declined", 402, "Payment declined", "The payment was declined.")


def test_declined_payments_and_sold_out_orders_are_expected_answers() -> None:
    assert verdict(402, ORDER_PLACED, DECLINED, conflicts=[OUT_OF_STOCK]) is None
    assert verdict(409, ORDER_PLACED, SOLD_OUT, conflicts=[OUT_OF_STOCK]) is None
    assert verdict(201, ORDER_PLACED, b'{"id": "x"}', conflicts=[OUT_OF_STOCK]) is None


def test_a_409_that_is_not_sold_out_is_a_failure_naming_its_type() -> None:
    message = verdict(409, ORDER_PLACED, LOST, conflicts=[OUT_OF_STOCK])
    assert message == (
        f"unexpected 409 {PROBLEM_BASE}order-conflict: "
        "Order conflict: The stock reservation was lost."
    )
    in_progress = _problem("idempotency-key-in-progress", 409, "Conflict", "Still running.")
    assert verdict(409, ORDER_PLACED, in_progress, conflicts=[OUT_OF_STOCK]) is not None
    assert verdict(409, ORDER_PLACED, in_progress, conflicts=[OUT_OF_STOCK, IN_PROGRESS]) is None


def test_an_unexpected_status_says_what_was_expected_and_the_problem() -> None:
    body = _problem("service-unavailable", 500, "Internal Server Error", "orders crashed")
    assert verdict(500, ORDER_PLACED, body) == (
        "expected 201/202/402/409, got 500: Internal Server Error: orders crashed"
    )
    assert verdict(503, {200}, b"<html>Bad   gateway</html>") == (
        "expected 200, got 503: <html>Bad gateway</html>"
    )


def test_no_response_is_a_failure_with_the_connection_error() -> None:
    assert verdict(0, {200}, None, error="ConnectionRefusedError(111)") == (
        "no response: ConnectionRefusedError(111)"
    )


def test_rate_limiting_fails_unless_the_run_expects_it() -> None:
    body = _problem("rate-limited", 429, "Too many requests", "Rate limit of 400 requests reached.")
    message = verdict(429, {200}, body)
    assert message is not None
    assert message.startswith("429 rate limited by the gateway: Too many requests")
    assert "REDLINE_RATE_LIMIT_IP_" in message
    assert verdict(429, {200}, body, rate_limited_ok=True) is None


def test_describe_cuts_long_bodies_and_names_empty_ones() -> None:
    assert checks.describe(b"") == "(empty body)"
    assert len(checks.describe(b"x" * 1000)) == 160
