"""The accounts service: registration, login (JWT access tokens), profiles."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from litestar.di import Provide
from pydantic import Field

from services.accounts.routes import AccountsController
from services.accounts.store import Passwords
from services.chassis import Port, TokenSettings, create_app, load_settings, run
from services.events.wiring import outbox_hooks

MIGRATIONS = Path(__file__).parent / "migrations"


class AccountsSettings(TokenSettings):
    port: Port = 8001
    token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    # Argon2id cost. The defaults are OWASP's minimum (19 MiB, 2 passes, ~20 ms);
    # tests lower them, production may raise them.
    password_time_cost: int = Field(default=2, ge=1, le=10)
    password_memory_kib: int = Field(default=19_456, ge=1024, le=1_048_576)
    # Where the outbox relay publishes user.registered.
    nats_servers: str = "nats://127.0.0.1:4222"
    outbox_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    # Hashes at once; one more is a fast 503 with Retry-After, never a queue.
    password_max_concurrent: int = Field(default=4, ge=1, le=256)


def build(settings: AccountsSettings) -> Litestar:
    passwords = Passwords(
        time_cost=settings.password_time_cost,
        memory_cost_kib=settings.password_memory_kib,
        max_concurrent=settings.password_max_concurrent,
    )
    outbox_startup, outbox_shutdown = outbox_hooks(
        settings.nats_servers, poll_interval=settings.outbox_poll_seconds
    )
    return create_app(
        "accounts",
        route_handlers=[AccountsController],
        settings=settings,
        migrations_dir=MIGRATIONS,
        dependencies={
            "passwords": Provide(lambda: passwords, sync_to_thread=False),
            "token_ttl_seconds": Provide(lambda: settings.token_ttl_seconds, sync_to_thread=False),
        },
        on_startup=[outbox_startup],
        on_shutdown=[outbox_shutdown],
        description="Registration, login with JWT access tokens, and the user's profile.",
    )


def create() -> Litestar:
    return build(load_settings(AccountsSettings))


def main() -> None:
    run(build, AccountsSettings)
