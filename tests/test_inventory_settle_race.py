"""settle_reservation's second pass: a reserve that commits between its UPDATE and its re-read.

The function's UPDATE skips a reservation still being inserted by another
transaction (invisible to the UPDATE's snapshot); if that reserve commits
before the function's re-read, the re-read finds it 'reserved' and the loop
must settle it, not answer with a reservation still reserved. Until migration
0005 that pass also listed every line twice in its answer.

Provoked from outside the function: a statement-level trigger, installed on
this test's database only, holds every UPDATE of reservations at its end on an
advisory lock the test holds (a statement trigger fires even when no row was
updated). The commit's UPDATE misses the uncommitted reserve and waits there;
the reserve commits; the test lets go; the re-read, a newer snapshot, finds it.
Without the loop the commit answers 'reserved' and this test fails (tried).
(Queueing sessions for table locks did not provoke it: an UPDATE queued for
its table lock saw the reserve, and a re-read queued for its lock missed it,
answering "no reservation", which is right for it: the commit came first.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import asyncpg

from services.chassis.db import Database
from services.inventory.app import MIGRATIONS

PRODUCT = 7
GATE = 7_424_242  # the advisory lock key the trigger waits on
STOCK = "SELECT available, reserved, sold FROM stock WHERE product_id = $1"
GATED_UPDATES = f"""
CREATE FUNCTION test_gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_lock({GATE});
    PERFORM pg_advisory_unlock({GATE});
    RETURN NULL;
END
$$;
CREATE TRIGGER test_gate AFTER UPDATE ON reservations
    FOR EACH STATEMENT EXECUTE FUNCTION test_gate();
"""


async def _waiting_at_the_gate(observer: asyncpg.Connection, pid: int) -> None:
    """Until session ``pid`` waits for the gate's advisory lock (10 s at most)."""
    query = (
        "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted "
        "AND locktype = 'advisory' AND objid = $2"
    )
    async with asyncio.timeout(10):
        while not await observer.fetchval(query, pid, GATE):
            await asyncio.sleep(0.01)


async def _commit_racing_a_reserve(dsn: str) -> tuple[asyncpg.Record, dict[str, int], str]:
    db = Database(dsn, name="inventory", min_size=1, max_size=1, migrations_dir=MIGRATIONS)
    await db.start(wait=True)
    await db.close()
    reserver, committer, gatekeeper = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        await gatekeeper.execute(GATED_UPDATES)
        before = await gatekeeper.fetchrow(STOCK, PRODUCT)
        order = uuid.uuid4()
        reserve = reserver.transaction()
        await reserve.start()
        reserved = await reserver.fetchval(
            "SELECT status FROM reserve_stock($1, $2, $3)", order, [PRODUCT], [2]
        )
        assert reserved == "reserved"

        await gatekeeper.execute("SELECT pg_advisory_lock($1)", GATE)
        commit = asyncio.create_task(
            committer.fetchrow("SELECT * FROM commit_reservation($1)", order)
        )
        # Its UPDATE has run, and found nothing it could see to settle.
        await _waiting_at_the_gate(gatekeeper, committer.get_server_pid())
        await reserve.commit()
        await gatekeeper.execute("SELECT pg_advisory_unlock($1)", GATE)
        settled = await asyncio.wait_for(commit, 10)

        after = await gatekeeper.fetchrow(STOCK, PRODUCT)
        moved = {k: after[k] - before[k] for k in ("available", "reserved", "sold")}
        stored = await gatekeeper.fetchval(
            "SELECT status FROM reservations WHERE order_id = $1", order
        )
        return settled, moved, stored
    finally:
        for conn in (reserver, committer, gatekeeper):
            await conn.close()


def test_a_commit_whose_update_missed_a_reserve_committing_settles_it_on_the_second_pass(
    new_database: Callable[[str], str],
) -> None:
    settled, moved, stored = asyncio.run(_commit_racing_a_reserve(new_database("settle_race")))
    assert settled["status"] == "committed"
    assert list(settled["product_ids"]) == [PRODUCT]
    assert list(settled["quantities"]) == [2]
    assert stored == "committed"
    assert moved == {"available": -2, "reserved": 0, "sold": 2}
