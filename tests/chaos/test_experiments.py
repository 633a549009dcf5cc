"""The chaos experiments, run against a real stack, in the order a reader meets them.

Each test runs one experiment file through the runner (as `redline chaos
run` does), requires its verdict to be "passed" — every tolerance met, the
steady state restored — and then checks again, from the journal, the things
that must never happen. The stack is shared: every experiment's hypothesis
after the method is the next one's hypothesis before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos.cli import EXPERIMENTS, resolve_configuration
from chaos.runner import assert_passed, load_experiment, outputs, run_experiment

pytestmark = pytest.mark.slow


def run(name: str, configuration: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    experiment = load_experiment(EXPERIMENTS / f"{name}.yaml")
    journal = run_experiment(
        experiment, resolve_configuration(experiment, configuration), tmp_path / name
    )
    assert_passed(journal)
    return outputs(journal)


def assert_books_balance(out: dict[str, Any]) -> None:
    ledger = out["after:charged-money-equals-confirmed-orders"]
    assert ledger["pending"] == 0
    assert ledger["payments_charged_cents"] == ledger["orders_confirmed_cents"]
    stock = out["after:stock-conserved-and-never-negative"]
    assert stock["difference"] == 0, "stock appeared or vanished"
    assert stock["negative"] == 0


def assert_no_order_lost_or_doubled(audit: dict[str, Any]) -> None:
    for never in (
        "lost",
        "changed",
        "duplicated",
        "not_terminal",
        "charged_but_cancelled",
        "confirmed_not_charged",
        "stock_not_settled",
    ):
        assert audit[never] == 0, f"{never}: {audit['examples']}"
    assert audit["orders"] >= audit["answered_201"]


def test_slow_payments_are_capped_by_the_bulkhead_and_orders_fail_fast(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    out = run("payments-slow", configuration, tmp_path)
    bulkhead = out["bulkhead-holds-at-most-its-32-slots-and-fills"]
    assert bulkhead["over_capacity"] == 0
    assert bulkhead["rejected"] > 0
    assert out["breaker-opens-on-the-timeouts"]["state"] == "open"
    assert out["orders-fail-fast-p99-ms"] < 1000, "well under the 2 s attempt timeout"
    assert out["catalog-error-ratio-unaffected"] == 0
    assert out["breaker-closes-through-half-open"]["transitions"].get("half_open->closed", 0) >= 1
    assert_no_order_lost_or_doubled(out["every-order-accounted-for"])
    assert_no_order_lost_or_doubled(out["every-burst-order-accounted-for"])
    assert_books_balance(out)


def test_failing_payments_open_the_breaker_which_pages_and_recovers_through_half_open(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    out = run("payments-erroring", configuration, tmp_path)
    assert out["breaker-opens-on-the-failure-rate"]["failure_rate"] >= 0.5
    alert = out["alert-circuit-breaker-open-reaches-alertmanager"]
    assert alert["seen_in"] == "alertmanager"
    assert alert["receivers"] == ["tickets"]
    assert out["it-closed-through-half-open"]["value"] >= 1
    assert out["alert-resolves"]["count"] == 0
    assert_no_order_lost_or_doubled(out["every-order-accounted-for"])
    assert_books_balance(out)


def test_a_killed_inventory_is_a_fast_503_and_comes_back(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    out = run("inventory-killed", configuration, tmp_path)
    assert out["catalog-failures-are-all-503"] == 1.0
    assert out["no-request-hangs-ms"] < 1100
    restarted = out["a-new-inventory-process-starts"]
    assert restarted["pid"] != restarted["old_pid"]
    assert out["prometheus-scrapes-it-again"]["value"] == 1
    assert_books_balance(out)


def test_orders_killed_mid_saga_loses_and_doubles_nothing(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    out = run("orders-killed-mid-saga", configuration, tmp_path)
    assert out["sagas-in-flight-when-killed"]["value"] >= 4
    audit = out["every-order-terminal-and-accounted-for-once"]
    assert_no_order_lost_or_doubled(audit)
    assert audit["orders_by_status"].get("confirmed", 0) >= audit["answered_201"]
    assert out["recovery-took-over-orphaned-sagas"]["value"] >= 1
    assert_books_balance(out)


def test_postgres_down_makes_services_unready_not_dead_and_loses_no_order(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    out = run("postgres-down", configuration, tmp_path)
    assert out["unready-but-alive-while-it-is-down"]["min_live_200"] == 1.0
    assert out["readiness-says-503"]["min_ready_503"] >= 0.8
    health = out["unready-but-alive-while-it-is-down"]["services"]
    assert all("postgres" in h["failing_checks"] for h in health.values())
    assert out["nothing-was-restarted"]["violations"] == 0
    assert_no_order_lost_or_doubled(out["no-committed-order-lost"])
    assert_books_balance(out)
    # The exemplar found is one of the outage's: stamped after the mark.
    assert out["trace-of-a-503-shows-the-database-error"]["found"] == 1


def test_half_failing_dependency_gets_no_more_retries_than_the_budget(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    out = run("retry-storm", configuration, tmp_path)
    storm = out["retries-within-the-budget"]
    assert storm["retries"] <= storm["retries_allowed"]
    assert storm["budget_exhausted"] > 0
    # Unguarded, three attempts at 50 % errors average 1.75 per call.
    assert storm["amplification"] < 1.6
    assert storm["dependency_requests"] <= storm["attempts"]


def test_a_bulkhead_keeps_a_slow_route_from_starving_the_others(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    out = run("bulkhead-isolation", configuration, tmp_path)
    assert out["isolated-catalog-error-ratio"] <= 0.01
    assert out["without-a-bulkhead-the-catalog-starves-error-ratio"] >= 0.5
    assert_no_order_lost_or_doubled(out["every-reserving-order-accounted-for"])
    assert_no_order_lost_or_doubled(out["every-slow-order-accounted-for"])
    assert_books_balance(out)


def test_nats_stopped_under_load_orders_keep_confirming_and_every_order_is_mailed_once(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    out = run("nats-down", configuration, tmp_path)
    assert out["orders-keep-confirming"] >= 0.95
    assert out["the-outbox-grows"]["orders"] >= 20
    assert out["alert-outbox-backlog-stale-fires"]["seconds"] is not None
    assert out["alert-nats-down-fires"]["seconds"] is not None
    assert out["outboxes-drain"]["total"] == 0
    mails = out["every-finished-order-mailed-exactly-once"]
    assert mails["violations"] == 0, mails["examples"]
    assert mails["orders"] >= 48, "3 orders/s for the ~17 s of load (as 90 was for 32 s)"


def test_a_poison_event_is_dead_lettered_and_the_orders_behind_it_are_mailed_once(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    out = run("poison-event", configuration, tmp_path)
    assert out["alert-notifications-dead-lettered-fires"]["seconds"] is not None
    mails = out["every-finished-order-mailed-exactly-once"]
    assert mails["violations"] == 0, mails["examples"]
    assert mails["orders"] >= 10


def test_notifications_killed_under_load_comes_back_and_mails_each_order_once(
    configuration: dict[str, Any], tmp_path: Path
) -> None:
    out = run("notifications-killed", configuration, tmp_path)
    restarted = out["a-new-notifications-process-starts"]
    assert restarted["pid"] != restarted["old_pid"]
    mails = out["every-finished-order-mailed-exactly-once"]
    assert mails["violations"] == 0, mails["examples"]
    assert mails["orders"] >= 20
