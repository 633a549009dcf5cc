"""Dashboards and alerts against the real thing: a stack under load, a real Prometheus.

A panel that shows "No data" after load is a bug; an alert that never fires
for a real fault is a bug. These tests run Locust through the gateway, then
every panel query of every dashboard against Prometheus, then faults that must
fire (and resolve) alerts all the way to Alertmanager's webhook.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboards.queries import LIVE_TEST_VARIABLES, expand
from loadtests.run import main as run_load
from redline.alert_sink import AlertSink
from tests.harness import ADMIN_HEADERS, Stack, prom_query, wait_until
from tests.otlp_receiver import OtlpReceiver

GENERATED = Path(__file__).resolve().parent.parent / "dashboards" / "generated"
# When each loaded stack's load was still running, and where it wrote its run (by gateway URL).
LOADED_AT: dict[str, float] = {}
RUNS_DIR: dict[str, Path] = {}


@pytest.fixture(scope="module")
def loaded_stack(stack: Stack, tmp_path_factory: pytest.TempPathFactory, locust_port: int) -> Stack:
    """The shared stack, after a short Locust run through the gateway (scraped by Prometheus)."""
    runs = RUNS_DIR[stack.gateway] = tmp_path_factory.mktemp("runs")
    code = run_load(
        [
            "--host", stack.gateway, "--shape", "steady", "--users", "8",
            "--spawn-rate", "8", "--duration", "20s", "--think-scale", "0.2",
            "--prometheus-port", str(locust_port),
            "--runs-dir", str(runs),
        ]
    )  # fmt: skip
    assert code == 0, "the load run itself failed; see its report"
    # Panels are evaluated as of the load's last seconds: a gauge of the load
    # generator (users, CPU) is stale once Locust has exited.
    LOADED_AT[stack.gateway] = time.time() - 3
    return stack


def test_the_load_run_reports_commit_to_mail_percentiles(loaded_stack: Stack) -> None:
    """Its shoppers listed their notifications; the summary holds the delays of the sent ones."""
    (traces,) = RUNS_DIR[loaded_stack.gateway].glob("*/traces.json")
    delay = json.loads(traces.read_text(encoding="utf-8"))["notification_delay"]
    assert delay["count"] >= 1, delay
    assert 0 < delay["p50_ms"] <= delay["p95_ms"] <= delay["p99_ms"] <= delay["max_ms"] < 10_000


def _dashboards() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(GENERATED.glob("*.json"))]


def _loaded_at(stack: Stack) -> float:
    return LOADED_AT[stack.gateway]


def test_every_panel_query_of_every_dashboard_returns_data(loaded_stack: Stack) -> None:
    at = _loaded_at(loaded_stack)
    empty = []
    checked = 0
    for dashboard in _dashboards():
        uid = dashboard["uid"]
        if uid == "redline-pipeline":
            # This stack sends spans to the tests' receiver, not through the
            # Collector: tests/pipeline/test_signals.py checks that dashboard.
            continue
        for title, expr in expand(dashboard, LIVE_TEST_VARIABLES.get(uid, {})):
            checked += 1
            r = httpx.get(
                f"{loaded_stack.prometheus}/api/v1/query", params={"query": expr, "time": at}
            ).json()
            assert r["status"] == "success", f"{uid} / {title}: {r}"
            if not r["data"]["result"]:
                empty.append(f"{uid} / {title}: {expr}")
    assert checked > 50
    assert not empty, "panels with no data after load:\n" + "\n".join(empty)


def test_latency_exemplars_lead_to_traces_the_backend_received(
    loaded_stack: Stack, otlp: OtlpReceiver
) -> None:
    service = next(d for d in _dashboards() if d["uid"] == "redline-service")
    with_exemplars = [
        t["expr"] for p in service["panels"] for t in p.get("targets", []) if t.get("exemplar")
    ]
    assert with_exemplars, "the service dashboard's latency panels ask for exemplars"
    title_expr = dict(expand(service, {"service": "gateway"}))
    exprs = [e for e in title_expr.values() if "http_server_request_duration_seconds_bucket" in e]
    now = time.time()
    found: set[str] = set()
    for expr in exprs:
        r = httpx.get(
            f"{loaded_stack.prometheus}/api/v1/query_exemplars",
            params={"query": expr, "start": now - 600, "end": now},
        ).json()
        found |= {e["labels"]["trace_id"] for s in r.get("data", []) for e in s["exemplars"]}
    assert found, "no exemplars behind the latency panels"
    received = {s.trace_id for s in otlp.find(lambda s: s.service_name == "gateway")}
    linked = found & received
    assert linked, "no exemplar trace id was exported to the tracing backend"
    assert len(linked) >= len(found) // 2, "most exemplars must point at exported traces"


def _notifications(webhook: AlertSink, alertname: str, status: str, **labels: str) -> list[Any]:
    return [
        a
        for a in list(webhook.received)
        if a["labels"].get("alertname") == alertname
        and a.get("status") == status
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def test_a_stopped_service_fires_target_down_to_the_webhook_then_resolves(
    loaded_stack: Stack, webhook: AlertSink
) -> None:
    pid = loaded_stack.pids()["accounts"]
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(
            lambda: prom_query(
                loaded_stack.prometheus,
                'ALERTS{alertname="TargetDown",job="accounts",alertstate="firing"}',
            ),
            timeout=60,
            message="TargetDown never fired in Prometheus",
        )
        wait_until(
            lambda: _notifications(webhook, "TargetDown", "firing", job="accounts"),
            timeout=60,
            message="Alertmanager never notified TargetDown",
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    firing = _notifications(webhook, "TargetDown", "firing", job="accounts")[0]
    assert firing["labels"]["severity"] == "page"
    assert firing["annotations"]["runbook_url"].endswith("/TargetDown.md")
    assert firing["annotations"]["summary"]
    wait_until(
        lambda: _notifications(webhook, "TargetDown", "resolved", job="accounts"),
        timeout=90,
        message="TargetDown never resolved after the service came back",
    )


PAGE_FIRING = (
    'ALERTS{alertname="GatewayAvailabilityBudgetBurn",severity="page",alertstate="firing"}'
)
# The page's second window pair (alerts/generated/compressed/gateway-availability.yml).
SLOW_BURN = (
    'slo:sli_error:ratio_rate6h{slo="gateway-availability"} / 0.005 > 6'
    ' and slo:sli_error:ratio_rate30m{slo="gateway-availability"} / 0.005 > 6'
)


def test_gateway_errors_burn_the_budget_and_page_then_resolve(
    loaded_stack: Stack, webhook: AlertSink
) -> None:
    """5xx on the public API: the fast-burn page fires, and resolves when errors stop.

    The errors stop once Prometheus fires the page with its slow-burn pair (6h
    and 30m) over the threshold too: that pair keeps the page firing for ~30 s
    after the last error, well past Alertmanager's group wait, so the page
    still reaches the webhook. Erring on until the webhook had it only added
    errors for the 30 s window to age out (the resolution came ~10 s later).
    """
    gateway, ops = loaded_stack.url("gateway"), loaded_stack.url("gateway-ops")
    prometheus = loaded_stack.prometheus
    fault = {"faults": [{"route": "/api/v1/products", "error_rate": 1.0, "error_status": 500}]}
    assert httpx.put(f"{ops}/admin/faults", json=fault, headers=ADMIN_HEADERS).status_code == 200

    def burning() -> bool:
        for _ in range(20):
            httpx.get(f"{gateway}/api/v1/products")
        return bool(prom_query(prometheus, PAGE_FIRING) and prom_query(prometheus, SLOW_BURN))

    try:
        wait_until(burning, timeout=90, interval=0.2, message="the burn-rate page never fired")
    finally:
        httpx.delete(f"{ops}/admin/faults", headers=ADMIN_HEADERS)
    page = wait_until(
        lambda: _notifications(webhook, "GatewayAvailabilityBudgetBurn", "firing", severity="page"),
        timeout=60,
        message="the burn-rate page never reached the webhook",
    )[0]
    assert page["labels"]["slo"] == "gateway-availability"
    assert page["annotations"]["runbook_url"].endswith(".md")

    def healed() -> bool:
        for _ in range(20):
            assert httpx.get(f"{gateway}/api/v1/products").status_code == 200
        return bool(
            _notifications(webhook, "GatewayAvailabilityBudgetBurn", "resolved", severity="page")
        )

    wait_until(healed, timeout=120, interval=0.5, message="the page never resolved")
