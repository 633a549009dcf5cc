"""Secrets and the admin API: strong JWT secrets outside development, /admin off the public port.

Issue 15: the JWT secret silently fell back to a public development default
whatever the environment, and the admin API (fault flags, breakers, bulkheads)
was served on the gateway's public port, next to /api/v1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from services.chassis import load_settings
from services.chassis.auth import DEV_SECRET
from services.inventory.app import InventorySettings
from services.payments.app import PaymentsSettings
from tests.harness import ADMIN_HEADERS, ROOT, Platform, ServiceProcess, free_port

STRONG = "k2Yz8wQ7nV4rT1pL6sD3fH9jB0mX5cA2eG8iU7oR4tW1"


def start_settings_only(service: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a service that will stop at its settings (or not): its exit and stderr."""
    return subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("REDLINE_")},
            "OTEL_TRACES_EXPORTER": "none",
            "REDLINE_PORT": "1",  # never reached: the settings stop it first
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (None, "is unset"),
        ("", "is unset"),
        (DEV_SECRET, "is a published development default"),
        ("redline-docker-dev-secret-change-me", "is a published development default"),
        ("short-secret", "is shorter than 32 characters"),
    ],
    ids=["unset", "empty", "dev-default", "old-compose-default", "short"],
)
def test_the_gateway_outside_development_refuses_a_weak_jwt_secret_in_one_line(
    secret: str | None, reason: str
) -> None:
    env = {"REDLINE_ENVIRONMENT": "production"}
    if secret is not None:
        env["REDLINE_JWT_SECRET"] = secret
    result = start_settings_only("gateway", **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"config error: REDLINE_JWT_SECRET {reason}"), lines[0]
    if secret:
        assert secret not in lines[0]  # never echo a secret


@pytest.mark.parametrize("service", ["accounts", "orders"])
def test_every_token_service_outside_development_refuses_an_unset_secret(service: str) -> None:
    result = start_settings_only(
        service, REDLINE_ENVIRONMENT="staging", DATABASE_URL="postgresql://127.0.0.1:1/x"
    )
    assert result.returncode == 2
    assert result.stderr.startswith("config error: REDLINE_JWT_SECRET is unset"), result.stderr


def test_services_that_never_see_a_token_need_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDLINE_ENVIRONMENT", "production")
    monkeypatch.delenv("REDLINE_JWT_SECRET", raising=False)
    assert load_settings(InventorySettings).environment == "production"
    assert load_settings(PaymentsSettings).environment == "production"


def test_the_gateway_starts_outside_development_with_a_strong_secret(tmp_path: Path) -> None:
    svc = ServiceProcess(
        "gateway",
        env={
            "REDLINE_ENVIRONMENT": "production",
            "REDLINE_JWT_SECRET": STRONG,
            "OTEL_TRACES_EXPORTER": "none",
        },
        log_path=tmp_path / "gateway.log",
    )
    try:
        svc.start()
    finally:
        assert svc.stop() == 0


SERVICES = ("gateway", "accounts", "inventory", "orders", "payments")


@pytest.mark.parametrize("name", SERVICES)
def test_the_admin_api_is_served_on_the_ops_listener_only(platform: Platform, name: str) -> None:
    svc = platform[name]
    for path in ("/admin/faults", "/admin/resilience"):
        public = httpx.get(f"{svc.url}{path}", headers=ADMIN_HEADERS)
        assert public.status_code == 404, public.text
        assert httpx.get(f"{svc.ops_url}{path}", headers=ADMIN_HEADERS).status_code == 200
    # And not under the public API's prefix either (the gateway routes only /api/v1).
    assert httpx.get(f"{svc.url}/api/v1/admin/faults", headers=ADMIN_HEADERS).status_code == 404
    # The ops listener serves nothing but /admin.
    assert httpx.get(f"{svc.ops_url}/api/v1/products").status_code == 404


def test_the_ops_listener_is_on_loopback_and_refuses_calls_without_the_token(
    platform: Platform,
) -> None:
    svc = platform["gateway"]
    assert svc.proc is not None
    listening = {
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(svc.proc.pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN
    }
    assert ("127.0.0.1", svc.ops_port) in listening
    assert httpx.get(f"{svc.ops_url}/admin/faults").status_code == 401
    wrong = {"authorization": "Bearer not-the-token"}
    assert httpx.get(f"{svc.ops_url}/admin/faults", headers=wrong).status_code == 401


def test_without_an_admin_token_the_ops_listener_refuses_every_call(tmp_path: Path) -> None:
    svc = ServiceProcess(
        "gateway",
        env={"OTEL_TRACES_EXPORTER": "none", "REDLINE_ADMIN_TOKEN": ""},
        log_path=tmp_path / "gateway.log",
    ).start()
    try:
        r = httpx.get(f"{svc.ops_url}/admin/faults", headers=ADMIN_HEADERS)
        assert r.status_code == 403
        assert r.headers["content-type"].startswith("application/problem+json")
    finally:
        svc.stop()


def test_an_ops_port_equal_to_the_public_port_is_a_config_error() -> None:
    port = str(free_port())
    result = start_settings_only("inventory", REDLINE_PORT=port, REDLINE_OPS_PORT=port)
    assert result.returncode == 2
    assert "REDLINE_OPS_PORT" in result.stderr
