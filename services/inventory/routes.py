"""HTTP routes of the inventory service: catalog reads and the reservation API."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, get, post
from litestar.params import Parameter

from services.chassis import Database
from services.chassis.validation import INT4_MAX, PRINTABLE_PATTERN
from services.inventory import store
from services.inventory.models import Product, ProductPage, Reservation, ReserveRequest, Stock

# Path ids are PostgreSQL integers: out-of-range values are a 400, not a driver error.
PathProductId = Annotated[int, Parameter(ge=1, le=INT4_MAX)]


class CatalogController(Controller):
    path = "/products"
    tags = ["catalog"]

    @get("/")
    async def list_products(
        self,
        db: Database,
        q: Annotated[
            str | None,
            Parameter(
                max_length=100,
                pattern=PRINTABLE_PATTERN,
                description="Search in name and description.",
            ),
        ] = None,
        category: Annotated[str | None, Parameter(max_length=50, pattern=PRINTABLE_PATTERN)] = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        offset: Annotated[int, Parameter(ge=0, le=100_000)] = 0,
    ) -> ProductPage:
        """List products, optionally filtered by a search term and a category."""
        return await store.list_products(db, q=q, category=category, limit=limit, offset=offset)

    @get("/{product_id:int}")
    async def get_product(self, db: Database, product_id: PathProductId) -> Product:
        return await store.get_product(db, product_id)

    @get("/{product_id:int}/stock")
    async def get_stock(self, db: Database, product_id: PathProductId) -> Stock:
        return await store.get_stock(db, product_id)


class StockController(Controller):
    path = "/stock"
    tags = ["stock"]

    @get("/ledger")
    async def ledger(self, db: Database) -> dict[str, int]:
        """Catalog-wide totals: available, reserved, sold, open reservations."""
        return await store.stock_ledger(db)


class ReservationController(Controller):
    path = "/reservations"
    tags = ["reservations"]

    @post("/")
    async def reserve(self, db: Database, data: ReserveRequest) -> Response[Reservation]:
        """Reserve stock for an order: all lines or none. Repeating the call is safe."""
        reservation, created = await store.reserve(db, data.order_id, data.items)
        return Response(reservation, status_code=201 if created else 200)

    @get("/{order_id:uuid}")
    async def get_reservation(self, db: Database, order_id: UUID) -> Reservation:
        return await store.get_reservation(db, order_id)

    @post("/{order_id:uuid}/release", status_code=200)
    async def release(self, db: Database, order_id: UUID) -> Reservation:
        """Give the stock back (saga compensation). Idempotent."""
        return await store.release(db, order_id)

    @post("/{order_id:uuid}/commit", status_code=200)
    async def commit(self, db: Database, order_id: UUID) -> Reservation:
        """Mark the reserved stock as sold. Idempotent."""
        return await store.commit(db, order_id)
