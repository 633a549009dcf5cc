"""The terminal console against a live `redline up`: its numbers are Prometheus's.

`redline top --once --json` runs headless, as a script would; every number it
prints is checked against a query written out here by hand and evaluated by
the same Prometheus at the same instant.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest

from redline.console import alerts as console_alerts
from redline.console._sources import Alertmanager, Prometheus
from redline.console.top import SETTLE_SECONDS
from tests.harness import ADMIN_HEADERS, ROOT, Stack, sign_up, traceparent, wait_until

pytestmark = pytest.mark.slow


def redline(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redline", *args, "--state-dir", str(stack.state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def query_at(stack: Stack, expr: str, at: float) -> dict[tuple[str, ...], float]:
    """``{label values: value}`` of an instant query at ``at``, keyed by sorted label values."""
    r = httpx.get(
        f"{stack.prometheus}/api/v1/query", params={"query": expr, "time": f"{at:.3f}"}, timeout=10
    )
    r.raise_for_status()
    out = {}
    for s in r.json()["data"]["result"]:
        out[tuple(v for _, v in sorted(s["metric"].items()))] = float(s["value"][1])
    return out


def same(shown: float | None, expected: float | None) -> bool:
    """The console shows no number where Prometheus computes NaN (0/0) or nothing."""
    if expected is None or expected != expected:
        return shown is None
    return shown == pytest.approx(expected, rel=1e-9, abs=1e-12)


def place_orders(stack: Stack, n: int) -> list[tuple[str, str]]:
    """``n`` orders through the gateway; their (trace id, order id)."""
    user = sign_up(stack.gateway)
    placed = []
    with httpx.Client(base_url=stack.gateway, timeout=10) as c:
        for _ in range(n):
            header, trace_id, _ = traceparent()
            r = c.post(
                "/api/v1/orders",
                json={"items": [{"product_id": 7, "quantity": 1}]},
                headers={
                    **user.headers,
                    "idempotency-key": str(uuid.uuid4()),
                    "traceparent": header,
                },
            )
            assert r.status_code == 201, r.text
            placed.append((trace_id, r.json()["id"]))
            c.get("/api/v1/products", params={"limit": 3})
    return placed


def test_top_once_prints_the_numbers_prometheus_gives_for_the_same_instant(stack: Stack) -> None:
    place_orders(stack, 2)
    # The route the per-route check below needs: a series' first sample gives no rate yet.
    gateway_rate = (
        "sum(rate(http_server_request_duration_seconds_count"
        '{job="gateway",http_route="/api/v1/products"}[1m]))'
    )

    def traffic_seen() -> bool:
        # A series' first sample already counts its first requests: keep the rate moving.
        httpx.get(f"{stack.gateway}/api/v1/products", params={"limit": 1}, timeout=5)
        # As of the instant top shows (settled, a second ago), not of now.
        settled = time.time() - SETTLE_SECONDS
        return any(v > 0 for v in query_at(stack, gateway_rate, settled).values())

    wait_until(traffic_seen, timeout=30, interval=0.25, message="no gateway request rate")
    run = redline(stack, "top", "--once", "--json")
    assert run.returncode == 0, run.stderr
    snap: dict[str, Any] = json.loads(run.stdout)
    at = snap["at"]
    assert snap["problems"] == []

    # Written out by hand, not taken from dashboards.signals: the check is independent.
    hist = "http_server_request_duration_seconds"
    rate = query_at(stack, f"sum by (job) (rate({hist}_count[1m]))", at)
    errors = query_at(
        stack,
        f'sum by (job) (rate({hist}_count{{http_response_status_code=~"5.."}}[1m]))'
        f" / sum by (job) (rate({hist}_count[1m]))",
        at,
    )
    p99 = query_at(
        stack, f"histogram_quantile(0.99, sum by (le, job) (rate({hist}_bucket[1m])))", at
    )
    route_rate = query_at(stack, f"sum by (http_route, job) (rate({hist}_count[1m]))", at)

    services = {r["job"]: r for r in snap["services"]}
    assert set(services) == {k[0] for k in rate}
    assert services["gateway"]["rate"] > 0
    for job, row in services.items():
        assert row["rate"] == pytest.approx(rate[(job,)], rel=1e-9)
        if row["rate"] > 0:  # without traffic the ratio is 0/0: no number
            assert row["error_ratio"] == pytest.approx(errors.get((job,), 0.0), abs=1e-12)
        if row["p99"] is not None:
            assert same(row["p99"], p99[(job,)]), (job, row)
    routes = {(r["route"], r["job"]): r["rate"] for r in snap["routes"]}
    assert routes == pytest.approx(route_rate, rel=1e-9)
    assert routes[("/api/v1/products", "gateway")] > 0

    budget = query_at(stack, "slo:error_budget_remaining:ratio", at)
    for slo in snap["slos"]:
        expected = next((v for k, v in budget.items() if slo["name"] in k), None)
        assert same(slo["budget_left"], expected), slo
    closed = query_at(stack, 'resilience_circuit_breaker_state{state="closed"} == 1', at)
    assert sum(b["state"] == "closed" for b in snap["breakers"]) == len(closed)
    down = query_at(stack, "up == 0", at)
    assert len(snap["targets_down"]) == len(down)

    plain = redline(stack, "top", "--once")  # not a terminal: plain lines
    assert plain.returncode == 0, plain.stderr
    gateway_line = next(ln for ln in plain.stdout.splitlines() if ln.startswith("service gateway "))
    assert "rate=" in gateway_line
    assert "p99=" in gateway_line


def test_alerts_shows_a_silenced_breaker_override_with_its_runbook_and_top_the_forced_breaker(
    stack: Stack,
) -> None:
    orders = stack.url("orders-ops")  # the admin API is on the ops listener
    am = stack.url("alertmanager")
    r = httpx.post(f"{orders}/admin/resilience/breakers/payments/force-open", headers=ADMIN_HEADERS)
    assert r.status_code == 200, r.text
    silence = httpx.post(
        f"{am}/api/v2/silences",
        json={
            "matchers": [
                {"name": "alertname", "value": "CircuitBreakerOverridden", "isRegex": False},
                {"name": "job", "value": "orders", "isRegex": False},
            ],
            "startsAt": "2020-01-01T00:00:00Z",
            "endsAt": "2099-01-01T00:00:00Z",
            "createdBy": "tests",
            "comment": "test_console_live",
        },
    ).json()["silenceID"]
    try:
        prom, manager = Prometheus(stack.prometheus), Alertmanager(am)

        def silenced() -> list[console_alerts.Alert]:
            found, _ = console_alerts.collect(prom, manager)
            return [
                a
                for a in found
                if a.name == "CircuitBreakerOverridden"
                and a.labels.get("job") == "orders"
                and a.state == "silenced"
            ]

        wait_until(silenced, timeout=45, interval=0.5, message="the override never showed silenced")
        run = redline(stack, "alerts", "--json")
        assert run.returncode == 0, run.stderr
        listed = [a for a in json.loads(run.stdout) if a["name"] == "CircuitBreakerOverridden"]
        assert listed, run.stdout
        assert listed[0]["state"] == "silenced"
        assert listed[0]["silenced_by"] == [silence]
        assert listed[0]["runbook"] == "alerts/runbooks/CircuitBreakerOverridden.md"
        assert (ROOT / listed[0]["runbook"]).exists()

        top = redline(stack, "top", "--once")
        assert "breaker orders->payments forced open" in top.stdout.splitlines()
        assert any(
            ln.startswith("alert silenced CircuitBreakerOverridden ")
            and "runbook=alerts/runbooks/CircuitBreakerOverridden.md" in ln
            for ln in top.stdout.splitlines()
        ), top.stdout
    finally:
        httpx.post(f"{orders}/admin/resilience/breakers/payments/reset", headers=ADMIN_HEADERS)
        httpx.delete(f"{am}/api/v2/silence/{silence}")


def test_exemplars_name_requests_whose_logs_span_every_service_of_the_order(stack: Stack) -> None:
    placed = place_orders(stack, 3)
    trace_id, order_id = placed[-1]

    def listed() -> list[str]:
        run = redline(stack, "exemplars", "/api/v1/orders", "--service", "gateway", "--since", "5m")
        assert run.returncode == 0, run.stderr
        return [ln for ln in run.stdout.splitlines() if "redline trace " in ln]

    lines = wait_until(listed, timeout=30, interval=0.5, message="no exemplar for the orders")
    seconds = [float(ln.split()[0].removesuffix("ms")) for ln in lines]
    assert seconds == sorted(seconds, reverse=True), "slowest first"
    exemplar_trace = lines[0].rsplit(" ", 1)[1]
    logged = redline(stack, "logs", "--trace", exemplar_trace, "--json")
    assert logged.returncode == 0, logged.stderr
    assert {json.loads(ln)["trace_id"] for ln in logged.stdout.splitlines()} == {exemplar_trace}

    # An order id finds the request that placed it: every service's lines of that trace.
    by_order = redline(stack, "logs", "--trace", order_id, "--json")
    assert by_order.returncode == 0, by_order.stderr
    records = [json.loads(ln) for ln in by_order.stdout.splitlines()]
    assert {r["trace_id"] for r in records} == {trace_id}
    assert {r["service"] for r in records} == {"gateway", "orders", "inventory", "payments"}
    times = [r["timestamp"] for r in records]
    assert times == sorted(times), "merged in time order"
