"""Charges and refunds, idempotent by order id.

The processor call happens inside a transaction holding an advisory lock on
the order id: a concurrent second charge for the same order waits, then
returns the first one's outcome, so the processor is called at most once per
order and a crash before COMMIT leaves no row (the charge is retried).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

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


async def charge(
    db: Database, processor: SimulatedProcessor, req: ChargeRequest
) -> tuple[Payment, bool]:
    """Charge once per order. Returns (payment, created); a decline raises 402, every time."""
    async with db.transaction() as conn:
        # Serialises charges for the same order even before its row exists.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))", str(req.order_id)
        )
        row = await conn.fetchrow("SELECT * FROM payments WHERE order_id = $1", req.order_id)
        if row is not None:
            existing = _payment(row)
            if existing.status == "voided":
                raise PaymentConflict(f"Order {req.order_id} was cancelled before it was charged.")
            if existing.amount_cents != req.amount_cents or existing.currency != req.currency:
                raise PaymentConflict(
                    f"Order {req.order_id} was charged with a different amount.",
                    status=422,
                    type_slug="payment-mismatch",
                )
            if existing.status == "declined":
                PAYMENTS.labels("charge", "replayed").inc()
                raise _declined(existing)
            PAYMENTS.labels("charge", "replayed").inc()
            return existing, False
        with PROCESSOR_LATENCY.labels("charge").time():
            auth = await processor.authorize(req.amount_cents, req.payment_method)
        status = "charged" if auth.approved else "declined"
        row = await conn.fetchrow(
            """INSERT INTO payments
                   (order_id, amount_cents, currency, status, decline_reason, processor_ref)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
            req.order_id,
            req.amount_cents,
            req.currency,
            status,
            auth.decline_reason,
            auth.reference,
        )
    payment = _payment(row)
    PAYMENTS.labels("charge", status).inc()
    if not auth.approved:
        DECLINES.labels(auth.decline_reason or "unknown").inc()
        raise _declined(payment)
    return payment, True


async def refund(db: Database, processor: SimulatedProcessor, order_id: UUID) -> Payment:
    """Refund a charge. Idempotent; an order never charged is voided so a late charge fails."""
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO payments (order_id, amount_cents, currency, status) "
            "VALUES ($1, 0, 'USD', 'voided') ON CONFLICT (order_id) DO NOTHING",
            order_id,
        )
        row = await conn.fetchrow("SELECT * FROM payments WHERE order_id = $1 FOR UPDATE", order_id)
        payment = _payment(row)
        if payment.status == "charged":
            with PROCESSOR_LATENCY.labels("refund").time():
                await processor.refund(payment.processor_ref or "")
            row = await conn.fetchrow(
                "UPDATE payments SET status = 'refunded', updated_at = now() "
                "WHERE order_id = $1 RETURNING *",
                order_id,
            )
            payment = _payment(row)
            PAYMENTS.labels("refund", "refunded").inc()
        else:
            PAYMENTS.labels("refund", "noop").inc()
    return payment


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
