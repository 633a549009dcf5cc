"""Per-service schema migrations: plain SQL files applied in order, once.

``migrations/0001_schema.sql``, ``0002_seed.sql``, ... are applied in file-name
order, each in its own transaction, and recorded in ``schema_migrations`` with
a checksum. A session-level advisory lock serialises concurrent runners
(two replicas starting at once): the second waits, then finds nothing to do.
An applied file whose content changed is an error, not a silent re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant shared by all runners of the same database works.
_LOCK_KEY = 0x7265646C696E65  # "redline"


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_lower_snake.sql")
        migrations.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return migrations


async def migrate(conn: Any, directory: Path) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    migrations = discover(directory)
    # A session-level lock around everything, CREATE TABLE included: two
    # concurrent "CREATE TABLE IF NOT EXISTS" can still collide in pg_type.
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        return await _apply(conn, migrations)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def _apply(conn: Any, migrations: list[Migration]) -> list[str]:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    integer PRIMARY KEY,
            name       text        NOT NULL,
            checksum   text        NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    done = {
        r["version"]: r
        for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    }
    applied: list[str] = []
    for migration in migrations:
        row = done.get(migration.version)
        if row is not None:
            if row["checksum"] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.name} was changed after it was applied "
                    f"(recorded as {row['name']}); add a new migration instead"
                )
            continue
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        applied.append(migration.name)
    return applied
