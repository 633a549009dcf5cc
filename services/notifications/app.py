"""The notifications service: order and account events from NATS, as mail."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from pydantic import Field

from services.chassis import Port, ServiceContext, ServiceSettings, create_app, load_settings, run
from services.events.wiring import Events
from services.notifications.consumer import Consumer
from services.notifications.mailer import Mailer
from services.notifications.routes import NotificationsController

MIGRATIONS = Path(__file__).parent / "migrations"


class NotificationsSettings(ServiceSettings):
    port: Port = 8005
    nats_servers: str = "nats://127.0.0.1:4222"
    smtp_host: str = "127.0.0.1"
    smtp_port: Port = 2525
    mail_from: str = "Redline <notifications@redline.invalid>"
    # At most this many messages fetched and in processing at once.
    max_in_flight: int = Field(default=32, ge=1, le=10_000)
    # Deliveries before an event is dead-lettered (deadletter.notifications).
    max_deliveries: int = Field(default=5, ge=1, le=100)
    retry_backoff_seconds: float = Field(default=0.5, gt=0, le=60)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0, le=3600)
    ack_wait_seconds: float = Field(default=30.0, ge=1, le=3600)
    consumer_stats_seconds: float = Field(default=5.0, gt=0, le=300)


def build(settings: NotificationsSettings) -> Litestar:
    events = Events(settings.nats_servers)

    async def startup(ctx: ServiceContext) -> None:
        assert ctx.db is not None
        consumer = Consumer(
            ctx.db,
            events.connect(ctx),
            Mailer(settings.smtp_host, settings.smtp_port, settings.mail_from),
            max_in_flight=settings.max_in_flight,
            max_deliveries=settings.max_deliveries,
            backoff_base=settings.retry_backoff_seconds,
            backoff_cap=settings.retry_backoff_max_seconds,
            ack_wait=settings.ack_wait_seconds,
            stats_interval=settings.consumer_stats_seconds,
        )
        events.run(consumer.run_forever())

    async def shutdown(ctx: ServiceContext) -> None:
        await events.stop()

    return create_app(
        "notifications",
        route_handlers=[NotificationsController],
        settings=settings,
        migrations_dir=MIGRATIONS,
        on_startup=[startup],
        on_shutdown=[shutdown],
        description="Mail for order and account events (NATS JetStream), and the list of it.",
    )


def create() -> Litestar:
    return build(load_settings(NotificationsSettings))


def main() -> None:
    run(build, NotificationsSettings)
