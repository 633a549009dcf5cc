"""Users and their password hashes."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.accounts.models import User
from services.chassis import Database, ProblemError
from services.events import enqueue, wake_relays


class EmailTaken(ProblemError):
    status = 409
    type_slug = "email-taken"
    title = "E-mail already registered"


class BadCredentials(ProblemError):
    status = 401
    type_slug = "bad-credentials"
    title = "Bad credentials"

    def __init__(self) -> None:
        # Same answer for an unknown e-mail and a wrong password.
        super().__init__("The e-mail or the password is wrong.")


class Passwords:
    """Argon2id. Hashing runs in a thread: argon2-cffi releases the GIL, the loop stays free."""

    def __init__(self, *, time_cost: int, memory_cost_kib: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=1
        )
        # Verified when the e-mail is unknown, so both paths cost the same time.
        self._dummy = self._hasher.hash("timing-equaliser")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return await asyncio.to_thread(
                self._hasher.verify, stored_hash or self._dummy, password
            )
        except (VerificationError, InvalidHashError):
            return False


async def register(
    db: Database, passwords: Passwords, *, email: str, password: str, name: str
) -> User:
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
        raise EmailTaken(f"An account for {email} already exists.") from None
    wake_relays()
    return User(id=user_id, email=email, name=name)


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
