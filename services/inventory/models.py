"""The inventory service's request and response bodies."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec
from litestar.params import Parameter

from services.chassis.validation import INT4_MAX, PRINTABLE_PATTERN

ProductId = Annotated[int, msgspec.Meta(ge=1, le=INT4_MAX)]
# Path and query parameters of the catalog, shared with the gateway's public API.
PathProductId = Annotated[int, Parameter(ge=1, le=INT4_MAX)]
SearchTerm = Annotated[
    str | None,
    Parameter(
        max_length=100, pattern=PRINTABLE_PATTERN, description="Search in name and description."
    ),
]
Category = Annotated[str | None, Parameter(max_length=50, pattern=PRINTABLE_PATTERN)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=1000)]
PriceCents = Annotated[int, msgspec.Meta(ge=1, le=INT4_MAX)]
ReservationStatus = Literal["reserved", "released", "committed"]


class Product(msgspec.Struct, kw_only=True):
    id: int
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str
    available: int


class ProductPage(msgspec.Struct, kw_only=True):
    items: list[Product]
    total: int
    limit: int
    offset: int


class Stock(msgspec.Struct, kw_only=True):
    product_id: int
    available: int
    reserved: int
    sold: int


class ReservationItem(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    product_id: ProductId
    quantity: Quantity


class ReserveLine(ReservationItem, forbid_unknown_fields=True, kw_only=True):
    unit_price_cents: (
        Annotated[
            PriceCents,
            msgspec.Meta(
                description="What the caller priced the line at: the reservation is "
                "refused (409 price-changed) unless it is the catalog's price. Optional."
            ),
        ]
        | None
    ) = None


class ReserveRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    order_id: UUID
    items: Annotated[list[ReserveLine], msgspec.Meta(min_length=1, max_length=50)]


class Reservation(msgspec.Struct, kw_only=True):
    order_id: UUID
    status: ReservationStatus
    items: list[ReservationItem]
