"""What the pipeline shows its users, through Jaeger's and Prometheus's own APIs.

Checked as a developer or an SRE would look, not through a stand-in receiver:

* an order's whole trace is in Jaeger within seconds, found by ``order.id`` and
  by request id, with the saga's steps named;
* every latency exemplar in Prometheus resolves to a trace in Jaeger, although
  Jaeger tail-samples (the exemplar's span asks it to keep the trace);
* tail sampling keeps every cancelled order and every slow request, and about
  the configured share of everything else;
* Jaeger's SPM API answers from the Collector's span metrics; the Collector's
  own metrics, which the CollectorLosingSpans alert reads, are in Prometheus;
* the services' log lines reach the Collector's log exporter with their trace ids;
* no span is lost between the services and Jaeger.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import pytest

from alerts.slos import SLOS
from tests.harness import (
    ADMIN_HEADERS,
    ROOT,
    Stack,
    User,
    prom_query,
    prom_value,
    wait_until,
)
from tests.otlp_receiver import OtlpReceiver
from tests.pipeline.conftest import SAMPLE_PERCENT

pytestmark = pytest.mark.slow


def jaeger(stack: Stack, path: str, **params: Any) -> Any:
    r = httpx.get(f"{stack.url('jaeger')}{path}", params=params, timeout=10)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return r.json()["data"]


def find_traces(stack: Stack, service: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = jaeger(
        stack, "/api/traces", service=service, tags=json.dumps(tags), lookback="1h", limit=50
    )
    return found


def trace_by_id(stack: Stack, trace_id: str) -> dict[str, Any] | None:
    data = jaeger(stack, f"/api/traces/{trace_id}")
    return data[0] if data else None


def services_of(trace: dict[str, Any]) -> set[str]:
    return {trace["processes"][s["processID"]]["serviceName"] for s in trace["spans"]}


def tag(span: dict[str, Any], key: str) -> Any:
    return next((t["value"] for t in span["tags"] if t["key"] == key), None)


def place_order(stack: Stack, user: User, method: str = "pm_card_visa") -> httpx.Response:
    product = httpx.get(f"{stack.gateway}/api/v1/products", params={"limit": 50}).json()
    in_stock = next(p for p in product["items"] if p["available"] > 5)
    return httpx.post(
        f"{stack.gateway}/api/v1/orders",
        json={"items": [{"product_id": in_stock["id"], "quantity": 1}], "payment_method": method},
        headers={**user.headers, "idempotency-key": str(uuid.uuid4())},
        timeout=10,
    )


def test_an_orders_whole_trace_is_in_jaeger_by_order_id_and_request_id(
    pipeline: Stack, user: User
) -> None:
    placed_at = time.monotonic()
    r = place_order(pipeline, user)
    assert r.status_code == 201, r.text
    order_id, request_id = r.json()["id"], r.headers["x-request-id"]

    def complete() -> dict[str, Any] | None:
        traces = find_traces(pipeline, "orders", {"order.id": order_id})
        if traces and {"gateway", "orders", "inventory", "payments"} <= services_of(traces[0]):
            return traces[0]
        return None

    trace = wait_until(complete, timeout=10, interval=0.25, message="the order's trace in Jaeger")
    took = time.monotonic() - placed_at
    names = {s["operationName"] for s in trace["spans"]}
    assert {"saga reserve_inventory", "saga charge_payment", "saga commit_inventory"} <= names
    assert "POST /api/v1/orders" in names
    print(
        f"order trace complete in Jaeger {took:.1f} s after the order; {len(trace['spans'])} spans"
    )

    by_request = find_traces(pipeline, "gateway", {"redline.request_id": request_id})
    assert [t["traceID"] for t in by_request] == [trace["traceID"]]

    # And from the terminal, where there is no Jaeger UI: the same trace as a waterfall.
    for lookup in (order_id, request_id):
        shown = subprocess.run(
            [sys.executable, "-m", "redline", "trace", lookup, "--state-dir", str(pipeline.state_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert trace["traceID"] in shown.stdout
        for text in ("gateway", "orders", "inventory", "payments", "saga charge_payment"):
            assert text in shown.stdout, shown.stdout


def test_every_cancelled_order_and_every_slow_request_is_kept(pipeline: Stack, user: User) -> None:
    declined = [place_order(pipeline, user, "pm_card_chargeDeclined") for _ in range(6)]
    assert {r.status_code for r in declined} == {402}, [r.text for r in declined]

    # A slow catalog: every read slower than the latency objective must be kept.
    slo = next(o for o in SLOS if o.name == "gateway-latency")
    threshold = slo.sli.threshold_seconds  # type: ignore[union-attr]
    fault = {"faults": [{"route": "/products/{product_id}", "latency_ms": threshold * 1000 + 150}]}
    admin = f"{pipeline.url('inventory-ops')}/admin/faults"
    assert httpx.put(admin, json=fault, headers=ADMIN_HEADERS).status_code == 200
    try:
        slow = [
            httpx.get(f"{pipeline.gateway}/api/v1/products/{i}", timeout=10) for i in range(1, 5)
        ]
    finally:
        httpx.delete(admin, headers=ADMIN_HEADERS)
    assert {r.status_code for r in slow} == {200}

    for r in declined:
        order_id = r.json()["order_id"]
        wait_until(
            functools.partial(find_traces, pipeline, "orders", {"order.id": order_id}),
            timeout=15,
            message=f"cancelled order {order_id}'s trace in Jaeger",
        )
    for r in slow:
        rid = r.headers["x-request-id"]
        wait_until(
            functools.partial(find_traces, pipeline, "gateway", {"redline.request_id": rid}),
            timeout=15,
            message=f"slow read {rid}'s trace in Jaeger",
        )


def test_ordinary_traces_are_kept_at_the_configured_share(pipeline: Stack) -> None:
    n = 400
    ids = []
    with httpx.Client(base_url=pipeline.gateway, timeout=10) as c:
        for i in range(n):
            r = c.get(f"/api/v1/products/{1 + i % 300}")
            assert r.status_code == 200
            ids.append(r.headers["x-request-id"])
    # Everything kept is in Jaeger once the decision wait is over: wait for
    # the count to stop moving.

    def kept() -> tuple[int, int] | None:
        traces = jaeger(
            pipeline, "/api/traces", service="gateway",
            operation="GET /api/v1/products/{product_id}", lookback="10m", limit=5000,
        )  # fmt: skip
        mine = [
            t for t in traces
            if any(tag(s, "redline.request_id") in set(ids) for s in t["spans"])
        ]  # fmt: skip
        marked = sum(1 for t in mine if any(tag(s, "redline.exemplar") for s in t["spans"]))
        return (len(mine), marked)

    counts: list[tuple[int, int]] = []

    def settled() -> tuple[int, int] | None:
        counts.append(kept() or (0, 0))
        # Nothing is in Jaeger until the decision wait is over; with 400 reads
        # at 20 %, a settled count of zero would itself be a failure.
        return (
            counts[-1] if counts[-1][0] and len(counts) >= 3 and counts[-1] == counts[-3] else None
        )

    total, marked = wait_until(settled, timeout=45, interval=1.5, message="kept traces settle")
    share = (total - marked) / (n - marked)
    print(f"kept {total} of {n} reads: {marked} for exemplars, {share:.1%} of the rest")
    # Binomial(n, 0.2): four standard deviations either side.
    p = SAMPLE_PERCENT / 100
    sigma = (p * (1 - p) / (n - marked)) ** 0.5
    assert abs(share - p) < 4 * sigma, (share, p)


def test_every_latency_exemplar_resolves_to_a_trace_in_jaeger(pipeline: Stack) -> None:
    with httpx.Client(base_url=pipeline.gateway, timeout=10) as c:
        for i in range(60):
            assert c.get(f"/api/v1/products/{1 + i}").status_code == 200
    now = time.time()

    def exemplars() -> list[str] | None:
        r = httpx.get(
            f"{pipeline.prometheus}/api/v1/query_exemplars",
            params={
                "query": 'http_server_request_duration_seconds_bucket{job=~"gateway|inventory"}',
                "start": now - 600,
                "end": now + 60,
            },
        )
        ids = [e["labels"]["trace_id"] for s in r.json()["data"] for e in s["exemplars"]]
        return ids or None

    trace_ids = sorted(set(wait_until(exemplars, timeout=20, message="exemplars in Prometheus")))
    missing = set(trace_ids)

    def all_resolve() -> bool:
        for tid in sorted(missing):
            if trace_by_id(pipeline, tid) is not None:
                missing.discard(tid)
        return not missing

    wait_until(
        all_resolve,
        timeout=20,
        interval=1,
        message=lambda: (
            f"{len(missing)} of {len(trace_ids)} exemplars not in Jaeger: {sorted(missing)[:5]}"
        ),
    )
    print(f"{len(trace_ids)} exemplars, all in Jaeger")


def test_jaegers_monitor_api_answers_from_the_span_metrics(pipeline: Stack, user: User) -> None:
    for _ in range(3):
        place_order(pipeline, user)

    def calls() -> list[dict[str, Any]] | None:
        r = httpx.get(
            f"{pipeline.url('jaeger')}/api/metrics/calls",
            params={
                "service": "orders",
                "groupByOperation": "true",
                "endTs": int(time.time() * 1000),
                "lookback": 300_000,
                "step": 5_000,
                "ratePer": 60_000,
            },
            timeout=10,
        )
        r.raise_for_status()
        metrics = r.json()["metrics"]
        with_points = [m for m in metrics if any(p.get("gaugeValue") for p in m["metricPoints"])]
        return with_points or None

    found = wait_until(calls, timeout=40, interval=1, message="call rates from Jaeger's SPM API")
    operations = {lbl["value"] for m in found for lbl in m["labels"] if lbl["name"] == "operation"}
    assert "POST /orders" in operations, operations

    latencies = httpx.get(
        f"{pipeline.url('jaeger')}/api/metrics/latencies",
        params={
            "service": "orders",
            "quantile": 0.95,
            "endTs": int(time.time() * 1000),
            "lookback": 300_000,
            "step": 5_000,
            "ratePer": 60_000,
        },
        timeout=10,
    )
    assert latencies.status_code == 200, latencies.text
    assert latencies.json()["metrics"], latencies.text


def test_the_collectors_own_metrics_are_in_prometheus(pipeline: Stack) -> None:
    # The series the CollectorLosingSpans alert and the dashboards read.
    for series in (
        'otelcol_receiver_accepted_spans_total{job="otel-collector"}',
        'otelcol_exporter_sent_spans_total{job="otel-collector"}',
        'otelcol_receiver_accepted_spans_total{job="jaeger"}',
        'up{job="spanmetrics"}',
    ):
        wait_until(
            functools.partial(prom_query, pipeline.prometheus, series),
            timeout=20,
            message=f"{series} in Prometheus",
        )


def test_log_lines_reach_the_log_exporter_with_their_trace_ids(
    pipeline: Stack, otlp: OtlpReceiver
) -> None:
    r = httpx.get(f"{pipeline.gateway}/api/v1/products/7")
    rid = r.headers["x-request-id"]

    def line() -> dict[str, Any] | None:
        return next(
            (rec for rec in list(otlp.log_records) if rec["attributes"].get("request_id") == rid),
            None,
        )

    record = wait_until(line, timeout=15, message="the access line through the Collector")
    assert len(record["trace_id"]) == 32
    assert set(record["trace_id"]) != {"0"}


def test_no_span_is_lost_between_the_services_and_jaeger(pipeline: Stack) -> None:
    """Counters at each hop, each read after the one before it caught up.

    Spans keep trickling in (background work is traced too), so the hops are
    never equal at one instant; but every span the services delivered by a
    moment must be counted by the Collector soon after, and every span the
    Collector accepted by then must reach Jaeger.
    """

    def total(expr: str) -> float:
        return prom_value(pipeline.prometheus, expr) or 0.0

    exported = total('sum(otel_sdk_exporter_span_exported_total{error_type=""})')
    accepted_q = 'sum(otelcol_receiver_accepted_spans_total{job="otel-collector"})'
    wait_until(
        lambda: total(accepted_q) >= exported,
        timeout=30,
        interval=1,
        message=lambda: f"the Collector to count the {exported:.0f} spans the services delivered",
    )
    accepted = total(accepted_q)
    for hop in (
        'sum(otelcol_exporter_sent_spans_total{job="otel-collector",exporter="otlp_grpc/jaeger"})',
        'sum(otelcol_receiver_accepted_spans_total{job="jaeger"})',
    ):
        wait_until(
            functools.partial(lambda q: total(q) >= accepted, hop),
            timeout=30,
            interval=1,
            message=f"{hop} to reach the {accepted:.0f} spans the Collector accepted",
        )
    failed = prom_value(
        pipeline.prometheus,
        "sum(otelcol_exporter_send_failed_spans_total) + sum(otelcol_receiver_refused_spans_total)",
    )
    assert not failed
    assert total('sum(otel_sdk_exporter_span_exported_total{error_type!=""})') == 0
    print(
        f"{exported:.0f} spans delivered by the services; all counted by the Collector and Jaeger"
    )


def test_the_pipeline_dashboard_has_data(pipeline: Stack) -> None:
    """Every panel of the pipeline dashboard draws something; the loss panel only on loss."""
    dashboard = json.loads((ROOT / "dashboards/generated/redline-pipeline.json").read_text())
    panels = [p for p in dashboard["panels"] if p.get("targets")]
    assert len(panels) >= 6

    def drawn(panel: dict[str, Any]) -> bool:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "10s")
            now = time.time()
            r = httpx.get(
                f"{pipeline.prometheus}/api/v1/query_range",
                params={"query": expr, "start": now - 120, "end": now, "step": "2s"},
                timeout=10,
            )
            r.raise_for_status()
            if any(series["values"] for series in r.json()["data"]["result"]):
                return True
        return False

    empty = [p["title"] for p in panels if p["title"] != "Spans lost, by stage" and not drawn(p)]
    assert not empty, f"panels with no data: {empty}"
