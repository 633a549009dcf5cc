"""HTTP routes of the inventory service: catalog reads and the reservation API."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Response, get, post

from services.chassis import Database
from services.chassis.openapi import problems, success
from services.chassis.validation import PageLimit, PageOffset
from services.inventory import store
from services.inventory.models import (
    Category,
    PathProductId,
    Product,
    ProductPage,
    Reservation,
    ReserveRequest,
    SearchTerm,
    Stock,
)


class CatalogController(Controller):
    path = "/products"
    tags = ["catalog"]

    @get("/")
    async def list_products(
        self,
        db: Database,
        q: SearchTerm = None,
        category: Category = None,
        limit: PageLimit = 20,
        offset: PageOffset = 0,
    ) -> ProductPage:
        """List products, optionally filtered by a search term and a category."""
        return await store.list_products(db, q=q, category=category, limit=limit, offset=offset)

    @get("/{product_id:int}", responses=problems(404))
    async def get_product(self, db: Database, product_id: PathProductId) -> Product:
        return await store.get_product(db, product_id)

    @get("/{product_id:int}/stock", responses=problems(404))
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

    @post(
        "/",
        status_code=201,
        responses={
            200: success(Reservation, "Reserved already: the same reservation."),
            **problems(409, 422),
        },
    )
    async def reserve(self, db: Database, data: ReserveRequest) -> Response[Reservation]:
        """Reserve stock for an order: all lines or none. Repeating the call is safe."""
        reservation, created = await store.reserve(db, data.order_id, data.items)
        return Response(reservation, status_code=201 if created else 200)

    @get("/{order_id:uuid}", responses=problems(404))
    async def get_reservation(self, db: Database, order_id: UUID) -> Reservation:
        return await store.get_reservation(db, order_id)

    @post("/{order_id:uuid}/release", status_code=200, responses=problems(409))
    async def release(self, db: Database, order_id: UUID) -> Reservation:
        """Give the stock back (saga compensation). Idempotent."""
        return await store.release(db, order_id)

    @post("/{order_id:uuid}/commit", status_code=200, responses=problems(404, 409))
    async def commit(self, db: Database, order_id: UUID) -> Reservation:
        """Mark the reserved stock as sold. Idempotent."""
        return await store.commit(db, order_id)
