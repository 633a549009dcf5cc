"""The service's PostgreSQL access: one asyncpg pool, migrations, health, metrics.

The service keeps running when PostgreSQL does not: connecting retries in the
background (readiness stays 503 meanwhile), and a lost or unreachable database
surfaces as ``DatabaseUnavailable`` (503 with ``Retry-After``), never as a
crash or a 500 with a driver traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from opentelemetry.instrumentation.utils import suppress_instrumentation

from services.chassis.errors import DatabaseUnavailable
from services.chassis.migrations import migrate
from telemetry import get_logger, query_logger, register_pool_collector
from telemetry._metrics import DB_CONNECTION_WAIT

_log = get_logger("db")

# Errors that mean "the database is not there right now", as opposed to a bad query.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.ConnectionFailureError,
    TimeoutError,
)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection goes through on its way back to the pool: nothing more.

    asyncpg's default reset is a round trip per release (``SELECT
    pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``), about a fifth
    of inventory's CPU per catalog read (py-spy). The services change no
    session state: no ``SET``, ``LISTEN``, cursors outside a transaction, and
    the one advisory lock (migrations) is released in a ``finally``. asyncpg
    still rolls back a transaction left open, whatever this does.
    """


class Database:
    def __init__(
        self,
        dsn: str,
        *,
        name: str,
        min_size: int = 1,
        max_size: int = 10,
        statement_timeout_seconds: float = 5.0,
        acquire_timeout_seconds: float = 2.0,
        migrations_dir: Path | None = None,
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.min_size = min_size
        self.max_size = max_size
        self.statement_timeout_seconds = statement_timeout_seconds
        self.acquire_timeout_seconds = acquire_timeout_seconds
        self.migrations_dir = migrations_dir
        self._pool: asyncpg.Pool | None = None
        self._pending = 0
        self._connect_task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.ready = asyncio.Event()
        self._wait = DB_CONNECTION_WAIT.labels(name)
        register_pool_collector(name, self.stats)

    # -- lifecycle ---------------------------------------------------------------
    async def _init_connection(self, conn: asyncpg.Connection) -> None:
        conn.add_query_logger(query_logger(self.name))

    async def _connect_once(self) -> None:
        pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            init=self._init_connection,
            reset=_keep_session,
            server_settings={
                "application_name": self.name,
                "statement_timeout": str(int(self.statement_timeout_seconds * 1000)),
            },
            timeout=5,
        )
        try:
            if self.migrations_dir is not None:
                async with pool.acquire() as conn:
                    applied = await migrate(conn, self.migrations_dir)
                if applied:
                    _log.info("migrations applied", migrations=applied)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self.ready.set()

    async def start(self, *, wait: bool = False) -> None:
        """Connect (and migrate) now if possible, else keep trying in the background."""
        self._connect_task = asyncio.create_task(self._connect_forever())
        if wait:
            await self.ready.wait()

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._connect_once()
            except UNAVAILABLE_ERRORS as exc:
                self.last_error = f"not reachable: {exc}"
                _log.warning("database not reachable, retrying", error=str(exc), retry_in=delay)
            except Exception as exc:
                # A wrong DSN, a missing database or a broken migration: retrying
                # keeps the process observable (readiness says why) instead of
                # crash-looping, and heals once an operator fixes the cause.
                self.last_error = f"{type(exc).__name__}: {exc}"
                _log.error("database start-up failed, retrying", exc_info=exc, retry_in=delay)
            else:
                self.last_error = None
                _log.info("database connected", pool_max=self.max_size)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None

    # -- use ---------------------------------------------------------------------
    def stats(self) -> tuple[int, int, int, int]:
        """(used, idle, max, pending) for the pool gauges."""
        pool = self._pool
        if pool is None:
            return 0, 0, self.max_size, self._pending
        size, idle = pool.get_size(), pool.get_idle_size()
        return size - idle, idle, pool.get_max_size(), self._pending

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        pool = self._pool
        if pool is None:
            raise DatabaseUnavailable("The database is not connected yet.")
        self._pending += 1
        start = time.perf_counter()
        try:
            conn = await pool.acquire(timeout=self.acquire_timeout_seconds)
        except UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable(_describe(exc)) from exc
        finally:
            self._pending -= 1
            self._wait.observe(time.perf_counter() - start)
        try:
            yield conn
        except UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable(_describe(exc)) from exc
        except asyncpg.InternalClientError as exc:
            # A session cut by the server in the middle of an operation can leave
            # asyncpg's protocol in a state the next operation cannot leave
            # ("cannot switch to state 12"; seen in chaos/experiments/postgres-down).
            # Drop the connection so the pool opens a fresh one, and answer as for
            # any lost session: 503, which callers retry for reads.
            conn.terminate()
            raise DatabaseUnavailable(_describe(exc)) from exc
        finally:
            try:
                await pool.release(conn)
            except (*UNAVAILABLE_ERRORS, asyncpg.InternalClientError) as exc:
                # Resetting the session for its next user failed: it died after
                # this request's work was done, which stands. asyncpg has
                # dropped the connection already; the pool opens a new one.
                _log.info("database session lost on release", error=_describe(exc))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.acquire() as conn, conn.transaction():
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return list(await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return str(await conn.execute(query, *args))

    async def ping(self) -> None:
        """The readiness check: a round trip on a pooled connection.

        Not traced: the health loop pings every 2 s, and each ping would be a
        trace of its own (one lone ``SELECT`` span) in every service's list.
        """
        if self._pool is None:
            raise DatabaseUnavailable(self.last_error or "not connected yet")
        with suppress_instrumentation():
            await self.fetchval("SELECT 1")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "No database connection became free in time."
    return "The database is not reachable."


async def ensure_database(server_dsn: str, database: str) -> None:
    """CREATE DATABASE unless it exists (embedded mode and tests only)."""
    conn = await asyncpg.connect(server_dsn, timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Another process may win the race; its database is as good as ours.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
