"""Migrations: in order, recorded, idempotent, safe from two processes at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from services.chassis.migrations import MigrationError, discover, migrate
from tests.harness import ROOT


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def _run(dsn: str, directory: Path) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, directory)
    finally:
        await conn.close()


async def _rows(dsn: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query))
    finally:
        await conn.close()


def test_applies_in_order_records_and_skips_on_second_run(
    tmp_path: Path, new_database: Callable[[str], str]
) -> None:
    dsn = new_database("mig")
    d = _write(
        tmp_path / "m",
        {
            "0002_add.sql": "ALTER TABLE t ADD COLUMN b int;",
            "0001_create.sql": "CREATE TABLE t (a int);",
        },
    )
    assert asyncio.run(_run(dsn, d)) == ["0001_create.sql", "0002_add.sql"]
    assert asyncio.run(_run(dsn, d)) == []
    rows = asyncio.run(_rows(dsn, "SELECT version, name FROM schema_migrations ORDER BY version"))
    assert [(r["version"], r["name"]) for r in rows] == [
        (1, "0001_create.sql"),
        (2, "0002_add.sql"),
    ]
    cols = asyncio.run(
        _rows(dsn, "SELECT column_name FROM information_schema.columns WHERE table_name='t'")
    )
    assert {r["column_name"] for r in cols} == {"a", "b"}


def test_a_failing_migration_leaves_nothing_half_applied(
    tmp_path: Path, new_database: Callable[[str], str]
) -> None:
    dsn = new_database("mig")
    d = _write(
        tmp_path / "m",
        {
            "0001_ok.sql": "CREATE TABLE ok (a int);",
            "0002_bad.sql": "CREATE TABLE half (a int); SELECT no_such_function();",
        },
    )
    with pytest.raises(asyncpg.UndefinedFunctionError):
        asyncio.run(_run(dsn, d))
    tables = asyncio.run(_rows(dsn, "SELECT tablename FROM pg_tables WHERE schemaname='public'"))
    names = {r["tablename"] for r in tables}
    assert "ok" in names
    assert "half" not in names
    assert len(asyncio.run(_rows(dsn, "SELECT * FROM schema_migrations"))) == 1


def test_an_edited_applied_migration_is_refused(
    tmp_path: Path, new_database: Callable[[str], str]
) -> None:
    dsn = new_database("mig")
    d = _write(tmp_path / "m", {"0001_create.sql": "CREATE TABLE t (a int);"})
    asyncio.run(_run(dsn, d))
    (d / "0001_create.sql").write_text("CREATE TABLE t (a bigint);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        asyncio.run(_run(dsn, d))


def test_bad_file_names_and_duplicate_versions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="NNNN_lower_snake"):
        discover(_write(tmp_path / "a", {"1_x.sql": ""}))
    with pytest.raises(MigrationError, match="share a version"):
        discover(_write(tmp_path / "b", {"0001_a.sql": "", "0001_b.sql": ""}))


def test_two_processes_migrating_at_once_apply_each_file_once(
    tmp_path: Path, new_database: Callable[[str], str]
) -> None:
    dsn = new_database("mig")
    # Slow migrations widen the window in which the two runners overlap.
    d = _write(
        tmp_path / "m",
        {
            "0001_create.sql": "CREATE TABLE t (a int); SELECT pg_sleep(0.3);",
            "0002_fill.sql": "INSERT INTO t SELECT generate_series(1, 10); SELECT pg_sleep(0.3);",
        },
    )
    script = (
        "import asyncio, sys, asyncpg; from pathlib import Path;"
        "from services.chassis.migrations import migrate\n"
        "async def main():\n"
        "    c = await asyncpg.connect(sys.argv[1])\n"
        "    print(await migrate(c, Path(sys.argv[2])))\n"
        "    await c.close()\n"
        "asyncio.run(main())"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, dsn, str(d)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    applied = sorted(out.strip() for out, _ in outs)
    assert applied == ["['0001_create.sql', '0002_fill.sql']", "[]"]
    assert asyncio.run(_rows(dsn, "SELECT count(*) AS n FROM t"))[0]["n"] == 10
