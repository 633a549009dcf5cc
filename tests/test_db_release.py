"""What a pooled connection carries to its next user (the pool's reset is a no-op).

services/chassis/db.py skips asyncpg's reset query on release (a round trip
per request). What must still hold: a transaction a request left open is
rolled back, never handed to the next request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.chassis.db import Database


async def _left_open(dsn: str) -> tuple[bool, int]:
    db = Database(dsn, name="release", min_size=1, max_size=1)
    await db.start(wait=True)
    try:
        await db.execute("CREATE TABLE t (n int)")
        async with db.acquire() as conn:
            await conn.execute("BEGIN")  # not managed: nothing here commits or rolls back
            await conn.execute("INSERT INTO t VALUES (1)")
        async with db.acquire() as conn:  # the same connection: the pool has one
            in_transaction = conn.is_in_transaction()
            rows = await conn.fetchval("SELECT count(*) FROM t")
        return in_transaction, rows
    finally:
        await db.close()


def test_a_transaction_left_open_is_rolled_back_before_the_next_user(
    new_database: Callable[[str], str],
) -> None:
    in_transaction, rows = asyncio.run(_left_open(new_database("release")))
    assert in_transaction is False
    assert rows == 0
