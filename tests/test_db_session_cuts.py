"""Sessions the server cuts (pg_terminate_backend) while queries run: a 503, never a 500.

What the postgres-down chaos experiment does once, here many times: queries
run back to back on a small pool while another connection terminates every
session of the database every 50 ms. Every failure a caller sees must be
``DatabaseUnavailable`` (a 503 the gateway retries for reads); anything else
reaches the client as a 500. Two asyncpg behaviours made that happen before:
a session cut mid-operation can leave the protocol in a state no later
operation leaves (``InternalClientError: cannot switch to state ...``), and
a session that dies after the work is done makes the pool's reset on release
raise from the ``finally`` of a request that had succeeded.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import asyncpg

from services.chassis.db import Database
from services.chassis.errors import DatabaseUnavailable

SECONDS = 3.0
READERS = 6


async def _cut_sessions_while_reading(dsn: str) -> tuple[Counter[str], int, int]:
    db = Database(dsn, name="cuts", min_size=4, max_size=4)
    await db.start(wait=True)
    admin = await asyncpg.connect(dsn)
    database = await admin.fetchval("SELECT current_database()")
    outcomes: Counter[str] = Counter()
    cut = 0
    loop = asyncio.get_running_loop()
    stop = loop.time() + SECONDS

    async def reader() -> None:
        while loop.time() < stop:
            try:
                assert await db.fetchval("SELECT count(*) FROM generate_series(1, 200)") == 200
                outcomes["ok"] += 1
            except DatabaseUnavailable:
                outcomes["unavailable"] += 1
            except Exception as exc:
                outcomes[type(exc).__name__] += 1

    async def cutter() -> None:
        nonlocal cut
        while loop.time() < stop:
            await asyncio.sleep(0.05)
            cut += await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )

    try:
        await asyncio.gather(cutter(), *(reader() for _ in range(READERS)))
        # Afterwards each connection cut in the last moments fails once (503)
        # and is replaced: one more try than the pool has connections succeeds.
        after = 0
        for _ in range(db.max_size + 1):
            try:
                after = await db.fetchval("SELECT 1")
                break
            except DatabaseUnavailable:
                continue
    finally:
        await admin.close()
        await db.close()
    return outcomes, cut, after


def test_cut_sessions_are_unavailable_never_an_unexpected_error(
    new_database: Callable[[str], str],
) -> None:
    outcomes, cut, after = asyncio.run(_cut_sessions_while_reading(new_database("cuts")))
    assert cut >= 20, f"only {cut} sessions were cut: the test did not exercise anything"
    assert outcomes["ok"] > 0, outcomes
    assert outcomes["unavailable"] > 0, outcomes
    unexpected = {k: v for k, v in outcomes.items() if k not in ("ok", "unavailable")}
    assert unexpected == {}, f"errors that would be a 500: {unexpected} ({outcomes})"
    assert after == 1
