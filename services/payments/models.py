"""The payments service's request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec

from services.chassis.validation import PaymentMethod

# pending and refunding: recorded before the card processor is called, until its answer.
PaymentStatus = Literal["pending", "charged", "declined", "refunding", "refunded", "voided"]


class ChargeRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    order_id: UUID
    amount_cents: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]
    currency: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")] = "USD"
    # A tokenised payment method, never a card number. Test methods behave like
    # Stripe's: pm_card_visa succeeds (bar the random decline rate),
    # pm_card_chargeDeclined and pm_card_insufficientFunds always decline.
    payment_method: PaymentMethod = "pm_card_visa"


class Payment(msgspec.Struct, kw_only=True):
    order_id: UUID
    amount_cents: int
    currency: str
    status: PaymentStatus
    decline_reason: str | None = None
    processor_ref: str | None = None
