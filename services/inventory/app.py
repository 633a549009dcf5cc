"""The inventory service: product catalog and stock reservations."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar

from services.chassis import Port, ServiceSettings, create_app, load_settings, run
from services.inventory.routes import CatalogController, ReservationController, StockController

MIGRATIONS = Path(__file__).parent / "migrations"


class InventorySettings(ServiceSettings):
    port: Port = 8002


def build(settings: InventorySettings) -> Litestar:
    return create_app(
        "inventory",
        route_handlers=[CatalogController, ReservationController, StockController],
        settings=settings,
        migrations_dir=MIGRATIONS,
        description="Product catalog and stock reservations (idempotent by order id).",
    )


def create() -> Litestar:
    """For ``uvicorn --factory services.inventory.app:create``."""
    return build(load_settings(InventorySettings))


def main() -> None:
    run(build, InventorySettings)
