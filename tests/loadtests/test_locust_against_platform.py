"""Locust with the Redline locustfile against the five services: local, distributed, gated.

One platform for the module (its fixture takes most of the time); runs are
short and small, since Locust, five services and PostgreSQL share two cores.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest

from loadtests import run
from tests.harness import Platform, free_port, wait_until
from tests.loadtests.support import (
    NAMED_REQUESTS,
    LocustProcess,
    failures,
    locust,
    running,
    stats,
)
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = pytest.mark.slow

SLOWEST = 8
SERIES = re.compile(r'^locust_requests_total\{method="GET",name="/api/v1/products"\} (\S+)$', re.M)


@dataclass(frozen=True)
class HeadlessRun:
    plan: run.Plan
    code: int
    output: str
    scrapes: tuple[str, str]  # two scrapes of the metrics endpoint, a moment apart


def _gateway_server_span(trace_id: str, span: ReceivedSpan) -> bool:
    return span.trace_id == trace_id and span.service_name == "gateway" and span.kind == "SERVER"


def _products_requested(text: str) -> float:
    m = SERIES.search(text)
    return float(m[1]) if m else 0.0


@pytest.fixture(scope="module")
def headless_run(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> HeadlessRun:
    """``redline load``'s command, steady shape, 15 s; the metrics endpoint scraped meanwhile."""
    port = free_port()
    args = run.build_parser().parse_args(
        [
            "--host", platform.gateway, "--shape", "steady", "--users", "6",
            "--spawn-rate", "6", "--duration", "15s", "--think-scale", "0.05",
            "--prometheus-port", str(port), "--max-error-ratio", "1%",
            "--", "--slowest", str(SLOWEST),
        ]
    )  # fmt: skip
    plan = run.plan(args, tmp_path_factory.mktemp("runs") / "steady")
    metrics = f"http://127.0.0.1:{port}/metrics"
    with running(LocustProcess(plan.command, plan.folder.parent / "locust.log")) as (proc,):

        def scrape_beyond(count: float) -> str | None:
            assert proc.running(), proc.tail()
            text = httpx.get(metrics, timeout=2).text
            return text if _products_requested(text) > count else None

        first = wait_until(lambda: scrape_beyond(0), timeout=20, interval=0.2)
        second = wait_until(lambda: scrape_beyond(_products_requested(first)), timeout=10)
        code = proc.wait(timeout=45)
        return HeadlessRun(plan, code, proc.output(), (first, second))


def test_every_journey_request_succeeds_within_its_expected_statuses(
    headless_run: HeadlessRun,
) -> None:
    rows = stats(headless_run.plan.stats_csv)
    listed = failures(headless_run.plan.folder / "stats_failures.csv")
    total = rows[("", "Aggregated")]
    assert total.requests > 200, headless_run.output[-3000:]
    assert total.failures / total.requests < 0.01, listed
    assert headless_run.code == 0, headless_run.output[-3000:]
    assert "redline: passed 1 threshold(s)" in headless_run.output


def test_every_named_request_appears_in_the_stats(headless_run: HeadlessRun) -> None:
    rows = stats(headless_run.plan.stats_csv)
    missing = NAMED_REQUESTS - set(rows)
    assert not missing, f"never requested: {sorted(missing)}"
    assert set(rows) - {("", "Aggregated")} <= NAMED_REQUESTS, "a request not named by its route"


def test_html_report_is_written_with_every_route(headless_run: HeadlessRun) -> None:
    html = headless_run.plan.html.read_text(encoding="utf-8")
    assert "<html" in html.lower()
    assert all(name in html for _, name in NAMED_REQUESTS)


def test_slowest_requests_are_listed_and_their_traces_reach_the_collector(
    headless_run: HeadlessRun, otlp: OtlpReceiver
) -> None:
    report = json.loads(headless_run.plan.traces.read_text(encoding="utf-8"))
    slowest = report["slowest"]
    assert len(slowest) == SLOWEST
    durations = [r["duration_ms"] for r in slowest]
    assert durations == sorted(durations, reverse=True)
    assert "Slowest requests (trace ids):" in headless_run.output
    for row in slowest:
        assert row["trace_id"] in headless_run.output
        (server,) = otlp.wait_for(partial(_gateway_server_span, row["trace_id"]))
        # The gateway continued the trace Locust started, under Locust's span.
        assert server.parent_span_id, "the gateway started a trace of its own"


def test_prometheus_endpoint_serves_client_side_series_while_running(
    headless_run: HeadlessRun, promtool: str
) -> None:
    first, second = headless_run.scrapes
    assert _products_requested(second) > _products_requested(first)
    for family in (
        "locust_requests_total",
        "locust_request_failures_total",
        "locust_request_duration_seconds_bucket",
        "locust_users",
        "locust_cpu_usage_ratio",
    ):
        assert f"\n{family}{{" in second, family
    assert 'le="0.0005"' in second
    assert 'le="10.0"' in second
    users = sum(float(v) for v in re.findall(r"^locust_users\{[^}]*\} (\S+)$", second, re.M))
    assert users == 6
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=second, capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_master_with_two_workers_aggregates_both_workers_requests(
    platform: Platform, tmp_path: Path
) -> None:
    port = free_port()
    master = LocustProcess(
        locust(
            "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
            "--expect-workers", "2", "--expect-workers-max-wait", "30",
            "--headless", "--host", platform.gateway, "-u", "4", "-r", "4", "-t", "3s",
            "--think-scale", "0.05", "--csv", str(tmp_path / "stats"), "--only-summary",
            "--prometheus-port", "0",
        ),
        tmp_path / "master.log",
    )  # fmt: skip
    workers = [
        LocustProcess(
            locust("--worker", "--master-host", "127.0.0.1", "--master-port", str(port)),
            tmp_path / f"worker-{i}.log",
        )
        for i in (1, 2)
    ]
    with running(master, *workers):
        assert master.wait(timeout=60) == 0, master.tail()
        for w in workers:
            assert w.wait(timeout=20) == 0, w.tail()

    own_counts = []
    for w in workers:
        m = re.search(r"redline: this worker made (\d+) requests", w.output())
        assert m, w.tail()
        own_counts.append(int(m[1]))
    assert all(n > 0 for n in own_counts), own_counts
    total = stats(tmp_path / "stats_stats.csv")[("", "Aggregated")].requests
    assert total == sum(own_counts)
    m = re.search(r"redline: (\d+) workers made ([\d +]+) = (\d+) requests", master.output())
    assert m, master.tail()
    assert (int(m[1]), int(m[3])) == (2, total)


def test_impossible_threshold_fails_the_run_with_a_one_line_reason(
    platform: Platform, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    code = run.main(
        [
            "--host", platform.gateway, "--shape", "steady", "--users", "2", "--spawn-rate", "2",
            "--duration", "4s", "--think-scale", "0.05", "--prometheus-port", "0",
            "--runs-dir", str(tmp_path), "--max-p99", "Aggregated=0.001ms",
        ]
    )  # fmt: skip
    out = capfd.readouterr().out
    assert code != 0
    reasons = [line for line in out.splitlines() if line.startswith("redline: FAILED thresholds")]
    assert len(reasons) == 1, out[-2000:]
    assert re.fullmatch(
        r"redline: FAILED thresholds: p99 of Aggregated [\d.]+ m?s > 0\.001 ms", reasons[0]
    )
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("-steady")
    assert {"report.html", "stats_stats.csv", "traces.json", "command.txt"} <= {
        p.name for p in folder.iterdir()
    }
