"""Users and their password hashes."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.accounts.models import User
from services.chassis import Database, ProblemError, ServiceUnavailable, resilience
from services.chassis.http_client import FINAL_OUTCOME_HEADER
from services.chassis.resilience import Bulkhead, BulkheadFullError, default_hooks
from services.events import enqueue, wake_relays
from telemetry import get_logger

_log = get_logger("accounts")


class BadCredentials(ProblemError):
    status = 401
    type_slug = "bad-credentials"
    title = "Bad credentials"

    def __init__(self) -> None:
        # Same answer for an unknown e-mail and a wrong password.
        super().__init__("The e-mail or the password is wrong.")


class HashingBusy(ServiceUnavailable):
    """Every Argon2 slot is taken: shed at once rather than queue behind the hashes."""

    type_slug = "password-hashing-busy"
    title = "Too many sign-ins at once"

    def __init__(self) -> None:
        super().__init__("Too many sign-ins and sign-ups at once; retry shortly.", retry_after=1)
        # The service is working, not failing: a caller's breaker must not count
        # this against it (a flood of sign-ins would otherwise open it for everyone).
        self.headers[FINAL_OUTCOME_HEADER] = "final"


class Passwords:
    """Argon2id. Hashing runs in a thread: argon2-cffi releases the GIL, the loop stays free.

    At most ``max_concurrent`` hashes run at once (each holds ``memory_cost_kib``
    and a core for tens of milliseconds); one more is refused at once with a
    503 and ``Retry-After`` (``HashingBusy``) instead of waiting in the thread
    pool's queue, where it would hold its connection and every request behind it.
    """

    def __init__(self, *, time_cost: int, memory_cost_kib: int, max_concurrent: int = 4) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=1
        )
        # Verified when the e-mail is unknown, so both paths cost the same time.
        self._dummy = self._hasher.hash("timing-equaliser")
        self.slots = Bulkhead("argon2", max_concurrent, 0.0, hooks=default_hooks())
        resilience.register(self.slots)

    async def hash(self, password: str) -> str:
        try:
            async with self.slots:
                return await asyncio.to_thread(self._hasher.hash, password)
        except BulkheadFullError:
            raise HashingBusy() from None

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            async with self.slots:
                return await asyncio.to_thread(
                    self._hasher.verify, stored_hash or self._dummy, password
                )
        except BulkheadFullError:
            raise HashingBusy() from None
        except (VerificationError, InvalidHashError):
            return False


async def register(
    db: Database, passwords: Passwords, *, email: str, password: str, name: str
) -> bool:
    """Create the account unless the address has one; whether it did is for the log only.

    The password is hashed either way, so both paths take the same time.
    """
    password_hash = await passwords.hash(password)
    user_id = uuid.uuid4()
    try:
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, $3, $4)",
                user_id,
                email,
                name,
                password_hash,
            )
            await enqueue(
                conn,
                event_type="user.registered",
                source="accounts",
                data={"user_id": str(user_id), "email": email, "name": name},
            )
    except asyncpg.UniqueViolationError:
        _log.info("registration for an address that has an account")
        return False
    wake_relays()
    return True


async def authenticate(db: Database, passwords: Passwords, *, email: str, password: str) -> User:
    row = await db.fetchrow(
        "SELECT id, email, name, password_hash FROM users WHERE lower(email) = lower($1)", email
    )
    ok = await passwords.verify(row["password_hash"] if row else None, password)
    if row is None or not ok:
        raise BadCredentials()
    return User(id=row["id"], email=row["email"], name=row["name"])


async def get_user(db: Database, user_id: uuid.UUID) -> User:
    row = await db.fetchrow("SELECT id, email, name FROM users WHERE id = $1", user_id)
    if row is None:
        raise ProblemError("The user no longer exists.", status=404, type_slug="user-not-found")
    return User(id=row["id"], email=row["email"], name=row["name"])
