"""The payments service: charges and refunds against a simulated card processor."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from litestar.di import Provide
from pydantic import Field

from services.chassis import Port, ServiceSettings, create_app, load_settings, run
from services.payments.processor import SimulatedProcessor
from services.payments.routes import ChargesController

MIGRATIONS = Path(__file__).parent / "migrations"


class PaymentsSettings(ServiceSettings):
    port: Port = 8004
    processor_median_latency_ms: float = Field(default=40.0, ge=0, le=60_000)
    processor_latency_sigma: float = Field(default=0.5, ge=0, le=3)
    processor_decline_rate: float = Field(default=0.02, ge=0, le=1)


def build(settings: PaymentsSettings) -> Litestar:
    processor = SimulatedProcessor(
        median_latency_ms=settings.processor_median_latency_ms,
        latency_sigma=settings.processor_latency_sigma,
        decline_rate=settings.processor_decline_rate,
    )
    return create_app(
        "payments",
        route_handlers=[ChargesController],
        settings=settings,
        migrations_dir=MIGRATIONS,
        dependencies={"processor": Provide(lambda: processor, sync_to_thread=False)},
        description=(
            "Charges and refunds, idempotent by order id, against a simulated card processor."
        ),
    )


def create() -> Litestar:
    return build(load_settings(PaymentsSettings))


def main() -> None:
    run(build, PaymentsSettings)
