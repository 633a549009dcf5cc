"""HTTP routes of the payments service."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Response, get, post
from litestar.params import SkipValidation

from services.chassis import Database
from services.chassis.openapi import problems, success
from services.payments import store
from services.payments.models import ChargeRequest, Payment
from services.payments.processor import SimulatedProcessor


class ChargesController(Controller):
    path = "/charges"
    tags = ["payments"]

    @post(
        "/",
        status_code=201,
        responses={
            200: success(Payment, "Charged already: the first outcome."),
            **problems(402, 409, 422),
        },
    )
    async def charge(
        self, db: Database, processor: SkipValidation[SimulatedProcessor], data: ChargeRequest
    ) -> Response[Payment]:
        """Charge an order once; a repeat returns the first outcome (a decline is a 402)."""
        payment, created = await store.charge(db, processor, data)
        return Response(payment, status_code=201 if created else 200)

    @get("/{order_id:uuid}", responses=problems(404))
    async def get_charge(self, db: Database, order_id: UUID) -> Payment:
        return await store.get(db, order_id)

    @post("/{order_id:uuid}/refund", status_code=200, responses=problems(404, 409))
    async def refund(
        self, db: Database, processor: SkipValidation[SimulatedProcessor], order_id: UUID
    ) -> Payment:
        """Refund (saga compensation). Idempotent; waits for a charge of the order in flight."""
        return await store.refund(db, processor, order_id)

    @get("/ledger", include_in_schema=True)
    async def ledger(self, db: Database) -> dict[str, int]:
        """Counts and sums per status, for reconciliation."""
        return await store.ledger(db)
