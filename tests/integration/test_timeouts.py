"""Per-call timeouts and query_timeout: the statement is cancelled on the server, not only
abandoned by the client, and the connection is kept when the cancel is confirmed."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import backends

from asyncdb import (
    Database,
    InterfaceError,
    OperationalError,
    QueryTimeoutError,
    TransactionAbortedError,
)

SLOW = {
    "postgresql": "SELECT pg_sleep(30)",
    "mysql": "SELECT SLEEP(30)",
    "sqlite": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000)"
        " SELECT count(*) FROM c"
    ),
}
SHORT = {
    "postgresql": "SELECT 1 FROM pg_sleep(1.5)",
    "mysql": "SELECT SLEEP(1.5)",
    "sqlite": (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000)"
        " SELECT count(*) FROM c"
    ),
}
RUNNING = {
    "postgresql": (
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
        " AND query = 'SELECT pg_sleep(30)'"
    ),
    "mysql": (
        "SELECT count(*) FROM information_schema.processlist WHERE info = 'SELECT SLEEP(30)'"
    ),
}


async def _left_running(backend: str, db_url: str, within: float = 5) -> int:
    """How many of the slow queries still run on the server, polled for up to `within` s."""
    if backend == "sqlite":
        return 0  # in process: checked by the connection running the next statement
    async with Database(db_url) as admin:
        deadline = time.monotonic() + within
        while True:
            running = int(await admin.fetch_val(RUNNING[backend]))
            if running == 0 or time.monotonic() > deadline:
                return running
            await asyncio.sleep(0.1)


async def test_timeout_cancels_the_query_on_the_server(backend: str, db_url: str) -> None:
    async with Database(db_url, min_size=1, max_size=1) as db:
        assert await db.fetch_val("SELECT 1") == 1
        before = db.pool_stats()
        start = time.monotonic()
        with pytest.raises(QueryTimeoutError) as info:
            await db.fetch_val(SLOW[backend], timeout=0.5)
        assert time.monotonic() - start < 15
        assert isinstance(info.value, OperationalError)
        assert "0.5s" in str(info.value) and ":asyncdb@" not in str(info.value)
        assert await _left_running(backend, db_url) == 0
        assert await db.fetch_val("SELECT 2") == 2
        after = db.pool_stats()
        if backend == "mysql":
            # aiomysql closes a connection whose read is cancelled: the query is killed on
            # the server all the same, and the connection replaced.
            assert after["invalidated"] == before["invalidated"] + 1
        else:
            # the cancel was confirmed: the same connection is reused, healthy
            assert after["invalidated"] == before["invalidated"]
            assert after["created"] == before["created"]


async def test_every_query_method_takes_a_timeout(backend: str, db: Database) -> None:
    slow = SLOW[backend]
    for call in (
        db.fetch_all(slow, timeout=0.5),
        db.fetch_one(slow, timeout=0.5),
        db.execute(slow, timeout=0.5),
        db.execute_result(slow, timeout=0.5),
    ):
        with pytest.raises(QueryTimeoutError):
            await call
    assert await db.fetch_val("SELECT 3", timeout=5) == 3


@backends("postgresql", "sqlite")
async def test_iterate_timeout_bounds_each_fetch(backend: str, db: Database) -> None:
    with pytest.raises(QueryTimeoutError):
        async for _ in db.iterate(SLOW[backend], timeout=0.5):
            pass
    rows = [row[0] async for row in db.iterate("SELECT 1 UNION ALL SELECT 2", timeout=5)]
    assert rows == [1, 2]


async def test_timeout_inside_a_transaction_dooms_it(backend: str, db: Database) -> None:
    await db.execute("DROP TABLE IF EXISTS bounded_tx")
    await db.execute("CREATE TABLE bounded_tx (id INTEGER PRIMARY KEY)")
    with pytest.raises(TransactionAbortedError):
        async with db.transaction():
            await db.execute("INSERT INTO bounded_tx (id) VALUES (1)")
            with pytest.raises(QueryTimeoutError):
                await db.fetch_val(SLOW[backend], timeout=0.5)
            await db.fetch_val("SELECT 1")  # refused until rollback
    assert await db.fetch_val("SELECT count(*) FROM bounded_tx") == 0  # the write is gone
    await db.execute("DROP TABLE bounded_tx")


async def test_query_timeout_default_and_per_call_override(backend: str, db_url: str) -> None:
    async with Database(db_url, query_timeout=0.5) as db:
        with pytest.raises(QueryTimeoutError):
            await db.fetch_val(SLOW[backend])
        assert await db.fetch_val(SHORT[backend], timeout=None) is not None  # no limit
        assert await db.fetch_val(SHORT[backend], timeout=30) is not None
    separator = "&" if "?" in db_url else "?"
    async with Database(f"{db_url}{separator}query_timeout=0.5") as db:
        with pytest.raises(QueryTimeoutError):
            await db.fetch_val(SLOW[backend])


@pytest.mark.parametrize("bad", ["soon", -1, 0, float("nan"), True])
async def test_bad_timeouts_are_refused_by_name(bad: object) -> None:
    with pytest.raises(InterfaceError, match="query_timeout"):
        Database("sqlite:///:memory:", query_timeout=bad)
    async with Database("sqlite:///:memory:") as db:
        with pytest.raises(InterfaceError, match="timeout"):
            await db.fetch_val("SELECT 1", timeout=bad)  # type: ignore[arg-type]


@backends("postgresql", "mysql")
async def test_cancelled_task_leaves_nothing_running(backend: str, db_url: str) -> None:
    # Closing the socket alone does not stop the statement: measured without the server-side
    # cancel, PostgreSQL ran pg_sleep(30) to its end and MariaDB noticed the closed socket
    # only ~4 s later. With it, both were gone within 0.2 s.
    async with Database(db_url) as db:
        task = asyncio.create_task(db.fetch_val(SLOW[backend]))
        await asyncio.sleep(1.0)
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - start < 2  # the cancel on the server runs in the background
        assert await _left_running(backend, db_url, within=3) == 0
        assert await db.fetch_val("SELECT 1") == 1
