"""Product names and prices as orders last read them from the catalog, for a while.

Asking inventory for every product of every order was an HTTP exchange, a
query and three spans per line: about a tenth of an order's CPU. Now a product
is read at most once per ``ttl`` seconds per process.

A cached price is what the order *believes*; the reservation carries it, and
inventory refuses the order (409 price-changed) when it is not the catalog's
price any more (services/inventory/migrations/0004_reserve_checks_prices.sql).
Prices still come from the catalog, never from the client, and an order is
never charged a price the catalog no longer has; the order that found the
stale price is cancelled before anything is charged, and ``forget`` makes the
next one read the catalog again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.chassis import ProblemError
from services.chassis.http_client import Downstream, DownstreamUnavailable
from services.orders.metrics import PRICE_LOOKUPS

# Products are a catalog's worth; the bound only stops a runaway.
MAX_PRODUCTS = 100_000


@dataclass(frozen=True)
class Listed:
    """A product as the catalog listed it: what an order line needs."""

    name: str
    price_cents: int


@dataclass
class Catalog:
    inventory: Downstream
    ttl: float  # seconds; 0 reads the catalog for every order
    _known: dict[int, tuple[Listed, float]] = field(default_factory=dict)

    async def listed(self, product_id: int) -> Listed:
        """The product's name and price: cached, or read from the catalog (and cached)."""
        now = time.monotonic()
        known = self._known.get(product_id)
        if known is not None and known[1] > now:
            PRICE_LOOKUPS.labels("cache").inc()
            return known[0]
        PRICE_LOOKUPS.labels("catalog").inc()
        r = await self.inventory.relay(
            "GET", f"/products/{product_id}", url_template="/products/{product_id}"
        )
        if r.status_code == 404:
            raise ProblemError(
                f"Product {product_id} does not exist.",
                status=422,
                type_slug="unknown-product",
                product_id=product_id,
            )
        if r.status_code != 200:
            raise DownstreamUnavailable(
                f"The catalog answered {r.status_code}.", dependency="inventory"
            )
        p = r.json()
        listed = Listed(p["name"], p["price_cents"])
        if self.ttl > 0:
            if len(self._known) >= MAX_PRODUCTS:
                self._known.clear()
            self._known[product_id] = (listed, now + self.ttl)
        return listed

    def forget(self, product_ids: Iterable[int]) -> None:
        """Read these products from the catalog next time (a price changed)."""
        for product_id in product_ids:
            self._known.pop(product_id, None)
