"""Probes follow the database, and SIGTERM drains before it stops."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.chassis.db import ensure_database
from services.chassis.pgserver import EmbeddedPostgres
from tests.conftest import throwaway_postgres
from tests.harness import ServiceProcess, otel_env, traceparent, wait_until
from tests.otlp_receiver import OtlpReceiver

ADMIN = {"authorization": "Bearer t0ken"}


@pytest.fixture
def own_pg() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL this test may stop without disturbing the others."""
    with throwaway_postgres() as server:
        asyncio.run(ensure_database(server.dsn(), "inv"))
        yield server


def _status(url: str) -> int:
    return httpx.get(url, timeout=3).status_code


def test_readiness_follows_postgres_while_liveness_stays_up(
    own_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    svc = ServiceProcess(
        "inventory",
        env={"DATABASE_URL": own_pg.dsn("inv"), **otel_env(None)},
        log_path=tmp_path / "inv.log",
    ).start()
    try:
        assert _status(f"{svc.url}/health/ready") == 200
        own_pg.stop()
        wait_until(
            lambda: _status(f"{svc.url}/health/ready") == 503, message="ready never turned 503"
        )
        assert _status(f"{svc.url}/health/live") == 200
        detail = httpx.get(f"{svc.url}/health").json()
        assert detail["status"] == "unhealthy"
        assert detail["checks"]["postgres"]["status"] == "fail"
        # A request needing the database is a clean 503, not a 500 with a driver error.
        r = httpx.get(f"{svc.url}/products/1")
        assert r.status_code == 503
        assert r.headers["retry-after"]
        assert r.headers["content-type"].startswith("application/problem+json")

        own_pg.start()
        wait_until(
            lambda: _status(f"{svc.url}/health/ready") == 200,
            timeout=20,
            message="ready never came back",
        )
        assert httpx.get(f"{svc.url}/products/1").status_code == 200
        assert svc.proc is not None
        assert svc.proc.poll() is None, "the service never restarted"
    finally:
        assert svc.stop() == 0


def test_starts_without_a_database_and_becomes_ready_when_it_appears(
    own_pg: EmbeddedPostgres, tmp_path: Path
) -> None:
    own_pg.stop()
    svc = ServiceProcess(
        "inventory",
        env={"DATABASE_URL": own_pg.dsn("inv"), **otel_env(None)},
        log_path=tmp_path / "inv.log",
    ).start(wait_ready=False)
    try:
        wait_until(lambda: _status(f"{svc.url}/health/live") == 200, message="never live")
        r = httpx.get(f"{svc.url}/health/ready")
        assert r.status_code == 503
        assert any("postgres" in reason for reason in r.json()["reasons"])
        own_pg.start()
        svc.wait_ready(timeout=20)
    finally:
        assert svc.stop() == 0


def test_sigterm_turns_readiness_first_finishes_inflight_flushes_and_exits_zero(
    own_pg: EmbeddedPostgres, tmp_path: Path, otlp: OtlpReceiver
) -> None:
    env = {
        "DATABASE_URL": own_pg.dsn("inv"),
        "REDLINE_ADMIN_TOKEN": "t0ken",
        "REDLINE_DRAIN_SECONDS": "1.0",
        **otel_env(otlp.endpoint),
        # Only the shutdown flush can deliver spans this test waits for.
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
    }
    svc = ServiceProcess("inventory", env=env, log_path=tmp_path / "inv.log").start()
    slow = {"faults": [{"route": "/products/{product_id}", "latency_ms": 2500}]}
    assert httpx.put(f"{svc.ops_url}/admin/faults", json=slow, headers=ADMIN).status_code == 200

    header, trace_id, _ = traceparent()
    result: dict[str, httpx.Response] = {}
    worker = threading.Thread(
        target=lambda: result.setdefault(
            "r", httpx.get(f"{svc.url}/products/3", headers={"traceparent": header}, timeout=15)
        )
    )
    worker.start()
    wait_until(
        lambda: (
            'http_server_active_requests{http_request_method="GET"} 1.0'
            in httpx.get(f"{svc.url}/metrics").text
        ),
        message="slow request never in flight",
    )
    assert svc.proc is not None
    svc.proc.terminate()

    def not_ready() -> httpx.Response | None:
        r = httpx.get(f"{svc.url}/health/ready", timeout=1)
        return r if r.status_code == 503 else None

    draining = wait_until(not_ready, timeout=1.0, message="readiness did not turn first")
    # While draining, every answer closes its connection: callers' pools let go
    # of this instance before its listener closes (services/chassis/server.py).
    assert draining.headers["connection"] == "close"
    worker.join(timeout=15)
    assert result["r"].status_code == 200, "the in-flight request was cut off"
    assert svc.proc.wait(timeout=15) == 0
    otlp.wait_for(lambda s: s.trace_id == trace_id and s.kind == "SERVER", timeout=2)
    events = [ln["event"] for ln in svc.log_lines()]
    assert events.index("draining") < events.index("service stopped")
