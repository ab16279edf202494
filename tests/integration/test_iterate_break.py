"""Leaving `iterate` early over a large result: the next statement runs at once.

A MySQL unbuffered cursor closed normally reads every remaining row off the wire first; a
`break` must not cost that (nor the same-task wait, then an InterfaceError).
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from asyncdb import Database, DisconnectionError
from tests.conftest import backends

# 10^6 rows of ~100 bytes, portable to the three backends.
_DIGITS = (
    "d(n) AS (SELECT 0 UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 "
    "UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 "
    "UNION ALL SELECT 8 UNION ALL SELECT 9), t(n) AS (SELECT 0 UNION ALL SELECT 1 "
    "UNION ALL SELECT 2)"
)
_PAD = {
    "postgresql": "repeat('x', 100)",
    "mysql": "REPEAT('x', 100)",
    "sqlite": "printf('%.100c', 'x')",
}


def big_query(backend: str) -> str:
    return (
        f"WITH {_DIGITS} SELECT a.n + 10*b.n + 100*c.n + 1000*e.n + 10000*f.n + 100000*t.n AS k, "
        f"{_PAD[backend]} AS pad FROM d a, d b, d c, d e, d f, d t"
    )


async def _break_after(rows: object, count: int) -> int:
    seen = 0
    async for _ in rows:  # type: ignore[attr-defined]
        seen += 1
        if seen >= count:
            break
    return seen


async def test_break_then_next_statement_at_once(db: Database, backend: str) -> None:
    before = db.pool_stats()["in_use"]
    assert await _break_after(db.iterate(big_query(backend)), 10) == 10
    start = time.monotonic()
    assert await db.fetch_val("SELECT 1") == 1
    assert time.monotonic() - start < 1.5  # today (MySQL): 2 s wait, then InterfaceError
    # the pool is healthy: many statements, then nothing left checked out
    for i in range(5):
        assert await db.fetch_val(f"SELECT {i}") == i
    for _ in range(100):
        if db.pool_stats()["in_use"] == before:
            break
        await asyncio.sleep(0.05)
    assert db.pool_stats()["in_use"] == before


async def test_break_on_explicit_connection(db: Database, backend: str) -> None:
    async with db.connection() as conn:
        assert await _break_after(conn.iterate(big_query(backend)), 10) == 10
        start = time.monotonic()
        assert await conn.fetch_val("SELECT 2") == 2
        assert time.monotonic() - start < 1.5


@backends("postgresql", "sqlite")
async def test_break_inside_transaction_keeps_it(db: Database, backend: str) -> None:
    async with db.transaction():
        assert await _break_after(db.iterate(big_query(backend)), 10) == 10
        start = time.monotonic()
        assert await db.fetch_val("SELECT 3") == 3
        assert time.monotonic() - start < 1.5


@backends("mysql")
async def test_mysql_break_inside_transaction_refuses_clearly(db: Database) -> None:
    """The only way not to drain is to drop the line, which loses the transaction: the next
    statement says so instead of running outside it."""
    with pytest.raises(DisconnectionError, match="lost"):
        async with db.transaction():
            assert await _break_after(db.iterate(big_query("mysql")), 10) == 10
            await db.fetch_val("SELECT 3")
    assert await db.fetch_val("SELECT 4") == 4


@backends("postgresql")
async def test_connection_killed_mid_iterate_then_break_no_bogus_warning(
    db: Database, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    killer = Database(db_url)
    await killer.connect()
    try:
        before = db.pool_stats()["invalidated"]
        seen = 0
        with caplog.at_level(logging.WARNING, logger="asyncdb"):
            async for row in db.iterate(
                "SELECT pg_backend_pid() AS pid, g FROM generate_series(1, 300000) g"
            ):
                seen += 1
                if seen == 1:
                    await killer.fetch_val("SELECT pg_terminate_backend(:pid)", {"pid": row["pid"]})
                    await asyncio.sleep(0.5)
                if seen >= 10:
                    break
        assert seen == 10
        for _ in range(100):  # the broken-out generator is closed by the loop soon after
            if db.pool_stats()["in_use"] == 0:
                break
            await asyncio.sleep(0.05)
        assert "not opened with transaction()" not in caplog.text
        assert db.pool_stats()["invalidated"] == before + 1
        assert await db.fetch_val("SELECT 5") == 5
    finally:
        await killer.disconnect()
