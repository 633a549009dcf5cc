"""Charges and refunds, idempotent by order id.

Charge and refund of one order run one at a time, across processes: each
holds a session-level advisory lock on the order id for its whole course, on
a pooled connection with no transaction open. The card processor is called
between two statements, each its own transaction: the first records the
intent (``pending``, with the idempotency key the processor gets), the second
the outcome. So no transaction spans the processor's latency, and whatever
stops a charge half-way (a crash, the caller's deadline) leaves a ``pending``
row; the order's next charge or refund asks the processor again with the same
key, which answers with what it did the first time and never authorises twice.
A refund that finds no row leaves a ``voided`` one, so a late charge fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
from opentelemetry.instrumentation.utils import suppress_instrumentation
from prometheus_client import Counter, Histogram

from services.chassis import Database, ProblemError
from services.payments.models import ChargeRequest, Payment
from services.payments.processor import SimulatedProcessor
from telemetry import REGISTRY

PAYMENTS = Counter(
    "payments_total",
    "Charge and refund attempts handled by the payments service, by operation and outcome.",
    ["operation", "outcome"],
    registry=REGISTRY,
)
DECLINES = Counter(
    "payments_declined_total",
    "Charges the card processor declined, by reason.",
    ["reason"],
    registry=REGISTRY,
)
PROCESSOR_LATENCY = Histogram(
    "payments_processor_duration_seconds",
    "Time the (simulated) card processor took to answer.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
PROCESSOR_AUTHORIZATIONS = Counter(
    "payments_processor_authorizations_total",
    "Authorisations asked of the card processor; replayed: answered from an earlier call "
    "with the same idempotency key.",
    ["replayed"],
    registry=REGISTRY,
)


class PaymentDeclined(ProblemError):
    status = 402
    type_slug = "payment-declined"
    title = "Payment declined"


class PaymentConflict(ProblemError):
    status = 409
    type_slug = "payment-conflict"
    title = "Payment is in another state"


def _payment(row: Any) -> Payment:
    return Payment(
        order_id=row["order_id"],
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        status=row["status"],
        decline_reason=row["decline_reason"],
        processor_ref=row["processor_ref"],
    )


def _declined(payment: Payment) -> PaymentDeclined:
    return PaymentDeclined(
        f"The card processor declined the charge: {payment.decline_reason}.",
        reason=payment.decline_reason,
        order_id=str(payment.order_id),
    )


@contextlib.asynccontextmanager
async def _order_locked(db: Database, order_id: UUID) -> AsyncIterator[asyncpg.Connection]:
    """A connection holding the order's lock, with no transaction open; the lock is
    released on the way out, or ends with the session when that fails.

    Lock and unlock stay statements of their own. Folded into the last UPDATE,
    the unlock would run before that statement commits: a waiting call would
    read the row as it was (``pending``), ask the processor again and find its
    own ``UPDATE ... WHERE status = 'pending'`` matching nothing. Folded into
    the first statement, the lock has no guaranteed place before that
    statement's read of the row. A transaction-scoped lock would need a
    transaction open across the processor call.
    """
    async with db.acquire() as conn:
        try:
            await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", str(order_id))
        except BaseException:
            conn.terminate()  # the lock may have been granted as we gave up waiting
            raise
        try:
            yield conn
        finally:
            try:
                # No span: the unlock never waits, and one per charge is noise in
                # Jaeger (the lock's span stays: its wait is the story).
                with suppress_instrumentation():
                    await conn.execute(
                        "SELECT pg_advisory_unlock(hashtextextended($1, 0))", str(order_id)
                    )
            except BaseException:
                conn.terminate()
                raise


def charge_key(order_id: UUID) -> str:
    """The idempotency key of the order's authorisation at the card processor.

    The order id stands for the client's Idempotency-Key (one order per key):
    unique across users, and no client-chosen text goes to a third party.
    """
    return f"charge-{order_id}"


def refund_key(order_id: UUID) -> str:
    return f"refund-{order_id}"


async def _authorize(
    conn: asyncpg.Connection, processor: SimulatedProcessor, row: asyncpg.Record
) -> asyncpg.Record:
    """Ask the processor for a ``pending`` charge and record the outcome."""
    with PROCESSOR_LATENCY.labels("charge").time():
        auth = await processor.authorize(
            row["amount_cents"],
            row["payment_method"],
            idempotency_key=row["processor_key"],
        )
    PROCESSOR_AUTHORIZATIONS.labels(str(auth.replayed).lower()).inc()
    status = "charged" if auth.approved else "declined"
    recorded: asyncpg.Record = await conn.fetchrow(
        """UPDATE payments SET status = $2, decline_reason = $3, processor_ref = $4,
                  updated_at = now()
           WHERE order_id = $1 AND status = 'pending' RETURNING *""",
        row["order_id"],
        status,
        auth.decline_reason,
        auth.reference,
    )
    PAYMENTS.labels("charge", status).inc()
    if not auth.approved:
        DECLINES.labels(auth.decline_reason or "unknown").inc()
    return recorded


async def charge(
    db: Database, processor: SimulatedProcessor, req: ChargeRequest
) -> tuple[Payment, bool]:
    """Charge once per order. Returns (payment, created); a decline raises 402, every time."""
    async with _order_locked(db, req.order_id) as conn:
        # A new charge, the common case, is one statement; a replay reads the row
        # the INSERT found (under the order's lock, as it was when it conflicted).
        row = await conn.fetchrow(
            """INSERT INTO payments (order_id, amount_cents, currency, status,
                                    payment_method, processor_key)
               VALUES ($1, $2, $3, 'pending', $4, $5)
               ON CONFLICT (order_id) DO NOTHING RETURNING *""",
            req.order_id,
            req.amount_cents,
            req.currency,
            req.payment_method,
            charge_key(req.order_id),
        ) or await conn.fetchrow("SELECT * FROM payments WHERE order_id = $1", req.order_id)
        existing = _payment(row)
        if existing.status == "voided":
            raise PaymentConflict(f"Order {req.order_id} was cancelled before it was charged.")
        if existing.amount_cents != req.amount_cents or existing.currency != req.currency:
            raise PaymentConflict(
                f"Order {req.order_id} was charged with a different amount.",
                status=422,
                type_slug="payment-mismatch",
            )
        if existing.status != "pending":
            PAYMENTS.labels("charge", "replayed").inc()
            if existing.status == "declined":
                raise _declined(existing)
            return existing, False
        # No transaction is open: the intent is on record, the outcome follows.
        payment = _payment(await _authorize(conn, processor, row))
    if payment.status == "declined":
        raise _declined(payment)
    return payment, True


async def refund(db: Database, processor: SimulatedProcessor, order_id: UUID) -> Payment:
    """Refund a charge. Idempotent; an order never charged is voided so a late charge fails."""
    async with _order_locked(db, order_id) as conn:
        row = await conn.fetchrow(
            "INSERT INTO payments (order_id, amount_cents, currency, status) "
            "VALUES ($1, 0, 'USD', 'voided') ON CONFLICT (order_id) DO NOTHING RETURNING *",
            order_id,
        ) or await conn.fetchrow("SELECT * FROM payments WHERE order_id = $1", order_id)
        if row["status"] == "pending":
            # A charge stopped at the processor: learn what it did, with its key.
            row = await _authorize(conn, processor, row)
        if row["status"] == "charged":
            row = await conn.fetchrow(
                "UPDATE payments SET status = 'refunding', updated_at = now() "
                "WHERE order_id = $1 RETURNING *",
                order_id,
            )
        if row["status"] != "refunding":
            PAYMENTS.labels("refund", "noop").inc()
            return _payment(row)
        with PROCESSOR_LATENCY.labels("refund").time():
            await processor.refund(row["processor_ref"] or "", idempotency_key=refund_key(order_id))
        row = await conn.fetchrow(
            "UPDATE payments SET status = 'refunded', updated_at = now() "
            "WHERE order_id = $1 RETURNING *",
            order_id,
        )
        PAYMENTS.labels("refund", "refunded").inc()
    return _payment(row)


async def get(db: Database, order_id: UUID) -> Payment:
    row = await db.fetchrow("SELECT * FROM payments WHERE order_id = $1", order_id)
    if row is None:
        raise ProblemError(
            f"No payment for order {order_id}.", status=404, type_slug="payment-not-found"
        )
    return _payment(row)


async def ledger(db: Database) -> dict[str, int]:
    """Totals per status, for reconciliation: charged - refunded must match confirmed orders."""
    rows = await db.fetch(
        "SELECT status, count(*) AS n, coalesce(sum(amount_cents), 0) AS cents "
        "FROM payments GROUP BY status"
    )
    out: dict[str, int] = {}
    for r in rows:
        out[f"{r['status']}_count"] = r["n"]
        out[f"{r['status']}_cents"] = int(r["cents"])
    return out
