"""The Alertmanager config: valid, routed as intended, inhibiting as intended.

Routing is checked with `amtool config routes test`. Inhibition has no amtool
command, so the last tests start a real Alertmanager (a second or so), post
alerts to it and read back which ones it suppresses.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from alerts import alertmanager
from alerts.paths import ALERTMANAGER_CONFIG
from tests.alerts.support import output, run, tool
from tests.harness import free_port, wait_until


def test_amtool_accepts_the_config() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, output(result)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "service=gateway", "alertname=GatewayAvailabilityBudgetBurn"], "pager"),
        (["severity=page", "service=orders", "alertname=TargetDown"], "pager"),
        (["severity=ticket", "service=orders", "alertname=CircuitBreakerOpen"], "tickets"),
        (["severity=info", "service=gateway", "alertname=CircuitBreakerOverridden"], "chat"),
        (["service=gateway", "alertname=SomethingUnlabelled"], "chat"),
    ],
)
def test_alerts_route_by_severity(labels: list[str], receiver: str) -> None:
    result = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, output(result)


def test_alerts_are_grouped_by_service_and_alertname() -> None:
    route = alertmanager.load()["route"]
    assert route["group_by"] == ["service", "alertname"]
    assert all("group_by" not in child for child in route["routes"])


def test_config_for_moves_every_webhook_and_keeps_its_path(tmp_path: Path) -> None:
    text = alertmanager.config_for("http://127.0.0.1:4321/", group_wait="1s", group_interval="2s")
    config = yaml.safe_load(text)
    assert alertmanager.webhook_urls(config) == {
        "pager": ["http://127.0.0.1:4321/alerts/pager"],
        "tickets": ["http://127.0.0.1:4321/alerts/tickets"],
        "chat": ["http://127.0.0.1:4321/alerts/chat"],
    }
    assert config["route"]["group_wait"] == "1s"
    assert [r.get("group_wait") for r in config["route"]["routes"]] == ["1s", None]
    assert config["inhibit_rules"] == alertmanager.load()["inhibit_rules"]
    copy = tmp_path / "alertmanager.yml"
    copy.write_text(text)
    result = run(tool("amtool"), "check-config", str(copy))
    assert result.returncode == 0, output(result)


def test_committed_webhooks_point_at_the_default_local_receiver() -> None:
    for urls in alertmanager.webhook_urls(alertmanager.load()).values():
        assert all(u.startswith(alertmanager.DEFAULT_WEBHOOK_BASE + "/alerts/") for u in urls)


def test_config_for_refuses_a_relative_url() -> None:
    with pytest.raises(ValueError, match="absolute"):
        alertmanager.config_for("127.0.0.1:4321")


# --- inhibition, against a real Alertmanager ---------------------------------------------


@pytest.fixture(scope="module")
def alertmanager_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("alertmanager")
    config = home / "alertmanager.yml"
    # Nothing listens on port 9 (discard); notifications are not under test here.
    config.write_text(alertmanager.config_for("http://127.0.0.1:9"))
    port = free_port()
    proc = subprocess.Popen(
        [
            tool("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200,
            message="Alertmanager ready",
        )
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _post(url: str, *alerts: dict[str, str]) -> None:
    body = [{"labels": a, "annotations": {}} for a in alerts]
    httpx.post(f"{url}/api/v2/alerts", json=body, timeout=5).raise_for_status()


def _inhibited(url: str, alertname: str, **labels: str) -> bool:
    for alert in httpx.get(f"{url}/api/v2/alerts", timeout=5).json():
        got = alert["labels"]
        if got["alertname"] == alertname and all(got.get(k) == v for k, v in labels.items()):
            return bool(alert["status"]["inhibitedBy"])
    raise AssertionError(f"{alertname} {labels} not in Alertmanager")


def test_a_page_silences_its_ticket_twin_only(alertmanager_url: str) -> None:
    burn = {"alertname": "GatewayAvailabilityBudgetBurn", "service": "gateway"}
    _post(
        alertmanager_url,
        {**burn, "severity": "page", "slo": "gateway-availability"},
        {**burn, "severity": "ticket", "slo": "gateway-availability"},
        {
            "alertname": "OrdersAvailabilityBudgetBurn",
            "service": "orders",
            "severity": "ticket",
            "slo": "orders-availability",
        },
    )
    assert _inhibited(alertmanager_url, "GatewayAvailabilityBudgetBurn", severity="ticket")
    assert not _inhibited(alertmanager_url, "GatewayAvailabilityBudgetBurn", severity="page")
    assert not _inhibited(alertmanager_url, "OrdersAvailabilityBudgetBurn")


def test_target_down_silences_its_symptoms_and_its_callers_alerts(alertmanager_url: str) -> None:
    _post(
        alertmanager_url,
        {"alertname": "TargetDown", "severity": "page", "service": "inventory",
         "peer_service": "inventory", "job": "inventory"},
        {"alertname": "ServiceNotReady", "severity": "ticket", "service": "inventory"},
        {"alertname": "CircuitBreakerOpen", "severity": "ticket", "service": "gateway",
         "peer_service": "inventory", "breaker": "inventory"},
        {"alertname": "CircuitBreakerOpen", "severity": "ticket", "service": "orders",
         "peer_service": "payments", "breaker": "payments"},
        {"alertname": "ServiceErrorRatioHigh", "severity": "ticket", "service": "gateway"},
    )  # fmt: skip
    assert _inhibited(alertmanager_url, "ServiceNotReady", service="inventory")
    assert _inhibited(alertmanager_url, "CircuitBreakerOpen", breaker="inventory")
    # A different dependency, and the user-facing symptom upstream, stay loud.
    assert not _inhibited(alertmanager_url, "CircuitBreakerOpen", breaker="payments")
    assert not _inhibited(alertmanager_url, "ServiceErrorRatioHigh", service="gateway")
    assert not _inhibited(alertmanager_url, "TargetDown", service="inventory")
