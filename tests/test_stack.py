"""`redline up`: the whole platform on one machine, with Prometheus and Alertmanager."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from services.topology import SERVICES
from tests.harness import (
    ROOT,
    Stack,
    prom_query,
    prom_value,
    sign_up,
    traceparent,
    wait_until,
)
from tests.otlp_receiver import OtlpReceiver


def test_every_service_shows_up_in_prometheus_within_30_seconds(stack: Stack) -> None:

    def all_up() -> bool:
        up = {r["metric"]["job"]: r["value"][1] for r in prom_query(stack.prometheus, "up")}
        return all(up.get(name) == "1" for name in SERVICES)

    wait_until(all_up, timeout=30, interval=0.25, message="not every service was scraped")
    # The 30 s budget is the wait above; benchmarks/stack_memory.py measures it.
    rules = httpx.get(f"{stack.prometheus}/api/v1/rules").json()["data"]["groups"]
    assert rules, "the alert and recording rules from alerts/ are loaded"
    targets = httpx.get(f"{stack.prometheus}/api/v1/alertmanagers").json()["data"]
    assert targets["activeAlertmanagers"], "Prometheus sends alerts to the Alertmanager"


def test_an_order_shows_up_as_red_series_with_an_exemplar_whose_trace_was_exported(
    stack: Stack, otlp: OtlpReceiver
) -> None:
    user = sign_up(stack.gateway)
    header, trace_id, _ = traceparent()
    r = httpx.post(
        f"{stack.gateway}/api/v1/orders",
        json={"items": [{"product_id": 3, "quantity": 1}]},
        headers={**user.headers, "idempotency-key": str(uuid.uuid4()), "traceparent": header},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    series = 'http_server_request_duration_seconds_count{job="gateway",http_route="/api/v1/orders",http_request_method="POST"}'
    wait_until(
        lambda: (prom_value(stack.prometheus, series) or 0) >= 1,
        timeout=30,
        message="the order never reached Prometheus",
    )
    for job, route in (
        ("orders", "/orders"),
        ("inventory", "/reservations"),
        ("payments", "/charges"),
    ):
        q = f'http_server_request_duration_seconds_count{{job="{job}",http_route="{route}"}}'
        # Each target is scraped on its own offset: the gateway's may come first.
        wait_until(
            lambda q=q: (prom_value(stack.prometheus, q) or 0) >= 1,  # type: ignore[misc]
            timeout=10,
            message=q,
        )

    def exemplar_traces() -> set[str]:
        now = time.time()
        resp = httpx.get(
            f"{stack.prometheus}/api/v1/query_exemplars",
            params={
                "query": 'http_server_request_duration_seconds_bucket{job="gateway",http_route="/api/v1/orders"}',
                "start": now - 300,
                "end": now + 5,
            },
        ).json()
        return {e["labels"]["trace_id"] for series in resp["data"] for e in series["exemplars"]}

    wait_until(
        lambda: trace_id in exemplar_traces(),
        timeout=30,
        message="the order's trace id never arrived as an exemplar",
    )
    otlp.wait_for(lambda s: s.trace_id == trace_id and s.service_name == "gateway")


def test_a_second_up_on_the_same_state_dir_says_so(stack: Stack) -> None:
    result = subprocess.run(stack.argv(), cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "already running" in lines[0]


def test_a_crashed_service_is_restarted(stack: Stack) -> None:
    before = stack.pids()["inventory"]
    os.kill(before, 9)
    wait_until(
        lambda: stack.pids().get("inventory") not in (None, before),
        timeout=20,
        message="inventory was not restarted",
    )
    wait_until(
        lambda: httpx.get(f"{stack.url('inventory')}/health/ready").status_code == 200,
        timeout=30,
        message="inventory did not become ready again",
    )
    assert httpx.get(f"{stack.gateway}/api/v1/products/1").status_code == 200


def test_status_reports_every_component_and_its_memory(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "redline", "status", "--state-dir", str(stack.state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    rows = {ln.split()[0]: ln.split() for ln in result.stdout.splitlines()[2:]}
    state = stack.state() or {}
    # component, pid, process, probe, restarts, uptime, memory, url
    assert rows["supervisor"][1] == str(state["pid"])
    for name in (*SERVICES, "prometheus", "alertmanager", "postgres"):
        comp = state["components"][name]
        assert rows[name][1] == str(comp["pid"]), rows[name]
        assert rows[name][2] == "running"
        assert rows[name][4] == str(comp.get("restarts", 0))
        assert re.fullmatch(r"\d+[mh]\d\d[sm]", rows[name][5]), rows[name]
    assert "total" in rows


def test_a_taken_port_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    s = Stack.build(tmp_path, otlp_endpoint=None)
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", s.ports["prometheus"]))
        blocker.listen()
        result = subprocess.run(s.argv(), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {s.ports['prometheus']} (prometheus) is already in use" in lines[0]
