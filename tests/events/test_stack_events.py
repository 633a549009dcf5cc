"""`redline up` runs NATS and the SMTP sink: an order through the gateway is a mail in a second."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import httpx
import pytest

from redline.mail_sink import read_maildir
from tests.harness import ROOT, Stack, prom_value, sign_up, wait_until

pytestmark = pytest.mark.slow


def test_status_lists_nats_and_notifications_ready(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "redline", "status", "--state-dir", str(stack.state_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert "ready" in rows["nats"], result.stdout
    assert "ready" in rows["notifications"], result.stdout
    state = stack.state()
    assert state is not None
    assert state["components"]["nats"]["ready_url"].endswith("/healthz")
    table = {row[0] for row in state["table"]}
    assert {"nats", "nats-exporter", "notifications", "mail-sink"} <= table


def test_prometheus_scrapes_nats_own_numbers_as_job_nats(stack: Stack) -> None:
    """redline up runs the exporter beside NATS and Prometheus scrapes it (job nats)."""

    def scraped() -> bool:
        return (
            prom_value(stack.prometheus, 'nats_up{job="nats"}') == 1
            and (prom_value(stack.prometheus, 'sum(nats_jetstream_streams{job="nats"})') or 0) >= 2
        )

    # EVENTS and DEADLETTER, created by the services' buses at start.
    wait_until(scraped, timeout=30, message="job nats never reported NATS up with its streams")


def test_an_order_placed_as_in_the_readme_is_one_mail_within_a_second(stack: Stack) -> None:
    user = sign_up(stack.gateway)
    r = httpx.post(
        f"{stack.gateway}/api/v1/orders",
        json={"items": [{"product_id": 5, "quantity": 1}], "payment_method": "pm_card_visa"},
        headers={**user.headers, "idempotency-key": str(uuid.uuid4())},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    answered = time.monotonic()
    order_id = r.json()["id"]
    maildir = stack.state_dir / "mail"

    def mail() -> list[object]:
        return [m for m in read_maildir(maildir) if order_id in str(m["Subject"])]

    wait_until(mail, timeout=10, message=f"no mail for order {order_id}")
    assert time.monotonic() - answered < 1.0
    assert len(mail()) == 1
    listed = httpx.get(
        f"{stack.gateway}/api/v1/notifications", headers=user.headers, timeout=5
    ).json()["items"]
    assert [n["event_type"] for n in listed if n["order_id"] == order_id] == ["order.confirmed"]
