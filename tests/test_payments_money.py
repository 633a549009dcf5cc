"""Payments: charge and refund serialise per order, the processor is called idempotently
and outside any database transaction, with the intent on record before and the outcome after.

Issue 15, item 6. A payments process whose card processor takes 0.8 s makes
"while the charge is at the processor" a window a test can act in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.payments.processor import Authorization, IdempotencyKeyReused, SimulatedProcessor
from tests.harness import ServiceProcess, free_port, otel_env, wait_until

PROCESSOR_SECONDS = 0.8


@pytest.fixture(scope="module")
def slow_payments(new_database: Callable[[str], str], logs_dir: Path) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        "payments",
        env={
            "DATABASE_URL": new_database("payments_slow"),
            "REDLINE_PROCESSOR_MEDIAN_LATENCY_MS": str(PROCESSOR_SECONDS * 1000),
            "REDLINE_PROCESSOR_LATENCY_SIGMA": "0",
            "REDLINE_PROCESSOR_DECLINE_RATE": "0",
            **otel_env(None),
        },
        log_path=logs_dir / f"payments-slow-{free_port()}.log",
    ).start()
    yield svc
    svc.stop()


def _sql(dsn: str, query: str) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query))
        finally:
            await conn.close()

    return asyncio.run(run())


def _at_processor(payments: ServiceProcess) -> bool:
    """A charge or refund holds its order's lock: it is at the card processor."""
    return bool(
        _sql(
            payments.env["DATABASE_URL"],
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
    )


def _charge(payments: ServiceProcess, order_id: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{payments.url}/charges",
        json={"order_id": order_id, "amount_cents": 4200, "payment_method": "pm_card_visa"},
        headers=headers,
        timeout=10,
    )


def _authorizations(payments: ServiceProcess, replayed: str) -> float:
    line = f'payments_processor_authorizations_total{{replayed="{replayed}"}} '
    for ln in httpx.get(f"{payments.url}/metrics").text.splitlines():
        if ln.startswith(line):
            return float(ln.split()[-1])
    return 0.0


def test_a_refund_racing_an_in_flight_charge_waits_for_it_and_undoes_it(
    slow_payments: ServiceProcess,
) -> None:
    """Before: the refund voided the order mid-charge; the charge's INSERT then failed and
    the processor's authorisation had no record."""
    order = str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        charging = pool.submit(_charge, slow_payments, order)
        wait_until(lambda: _at_processor(slow_payments), message="the charge never started")
        refund = httpx.post(f"{slow_payments.url}/charges/{order}/refund", timeout=10)
        charge = charging.result()
    assert charge.status_code == 201, charge.text
    assert refund.status_code == 200, refund.text
    assert refund.json()["status"] == "refunded", refund.text
    recorded = httpx.get(f"{slow_payments.url}/charges/{order}").json()
    assert recorded["status"] == "refunded"
    assert recorded["processor_ref"] == charge.json()["processor_ref"]


def test_the_processor_is_called_with_the_intent_on_record_and_no_transaction_open(
    slow_payments: ServiceProcess,
) -> None:
    order = str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        charging = pool.submit(_charge, slow_payments, order)
        wait_until(lambda: _at_processor(slow_payments), message="the charge never started")
        sessions = _sql(
            slow_payments.env["DATABASE_URL"],
            "SELECT state FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        during = httpx.get(f"{slow_payments.url}/charges/{order}")
        charge = charging.result()
    assert "idle in transaction" not in {s["state"] for s in sessions}, sessions
    assert during.status_code == 200, during.text
    assert during.json()["status"] == "pending"
    assert charge.status_code == 201, charge.text
    assert httpx.get(f"{slow_payments.url}/charges/{order}").json()["status"] == "charged"


def test_a_charge_cut_off_at_the_processor_is_finished_with_the_same_authorisation(
    slow_payments: ServiceProcess,
) -> None:
    """The caller's deadline stops the charge mid-call; its retry must not authorise again."""
    order = str(uuid.uuid4())
    fresh, replayed = (
        _authorizations(slow_payments, "false"),
        _authorizations(slow_payments, "true"),
    )
    cut = _charge(slow_payments, order, **{"x-deadline-remaining-ms": "300"})
    assert cut.status_code == 504, cut.text
    intent = httpx.get(f"{slow_payments.url}/charges/{order}")
    assert intent.status_code == 200, intent.text
    assert intent.json()["status"] == "pending"
    retried = _charge(slow_payments, order)
    assert retried.status_code == 201, retried.text
    assert retried.json()["status"] == "charged"
    # The cut-off call's authorisation went on at the processor; the retry got its
    # answer (a replay), and nothing was authorised afresh.
    assert _authorizations(slow_payments, "true") == replayed + 1
    assert _authorizations(slow_payments, "false") == fresh


def test_the_processor_answers_a_repeated_key_with_the_first_authorisation() -> None:
    # Half the charges decline at random: a second authorisation would show.
    processor = SimulatedProcessor(
        median_latency_ms=20, latency_sigma=0, decline_rate=0.5, rng=random.Random(7)
    )

    async def run() -> list[Authorization]:
        together = await asyncio.gather(
            *(processor.authorize(500, "pm_card_visa", idempotency_key="order-1") for _ in range(5))
        )
        later = [
            await processor.authorize(500, "pm_card_visa", idempotency_key="order-1")
            for _ in range(5)
        ]
        other = await processor.authorize(500, "pm_card_visa", idempotency_key="order-2")
        with pytest.raises(IdempotencyKeyReused):
            await processor.authorize(999, "pm_card_visa", idempotency_key="order-1")
        return [*together, *later, other]

    *same, other = asyncio.run(run())
    assert len({(a.reference, a.approved) for a in same}) == 1, "one authorisation for one key"
    assert [a.replayed for a in same] == [False] + [True] * 9
    assert other.reference != same[0].reference
    assert processor.authorizations == 2


def test_a_charge_whose_process_died_at_the_processor_is_on_record_and_refundable(
    slow_payments: ServiceProcess,
) -> None:
    """SIGKILL mid-call: the intent survives, and the saga's refund settles it."""
    order = str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        charging = pool.submit(_charge, slow_payments, order)
        wait_until(lambda: _at_processor(slow_payments), message="the charge never started")
        slow_payments.kill()
        with pytest.raises(httpx.HTTPError):
            charging.result()
    slow_payments.start()
    assert httpx.get(f"{slow_payments.url}/charges/{order}").json()["status"] == "pending"
    refund = httpx.post(f"{slow_payments.url}/charges/{order}/refund", timeout=10)
    assert refund.status_code == 200, refund.text
    assert refund.json()["status"] == "refunded"
    assert _charge(slow_payments, order).status_code == 200  # a late retry changes nothing
    assert httpx.get(f"{slow_payments.url}/charges/{order}").json()["status"] == "refunded"
