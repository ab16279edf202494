"""SQLite transactions join the writers' line at their first write, not at BEGIN."""

from __future__ import annotations

import asyncio

import pytest

from asyncdb import ConflictError, Database

pytestmark = pytest.mark.sqlite


@pytest.fixture
async def sqlite_db(tmp_path) -> Database:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'c.sqlite3'}", max_size=20, busy_timeout=3)
    await db.connect()
    await db.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    await db.execute("INSERT INTO counter VALUES (1, 0)")
    try:
        yield db
    finally:
        await db.disconnect()


async def test_writer_awaiting_a_reader_completes(sqlite_db: Database) -> None:
    """Task A writes inside a transaction and awaits task B, which only reads inside its
    own transaction: B must not wait in line behind A (that deadlocked until busy_timeout)."""
    db = sqlite_db

    async def reader() -> int:
        async with db.transaction():
            value: int = await db.fetch_val("SELECT n FROM counter WHERE id = 1")
            return value

    async with db.transaction():
        await db.execute("UPDATE counter SET n = 5 WHERE id = 1")
        seen = await asyncio.wait_for(asyncio.ensure_future(reader()), 30)
    assert seen == 0  # B's snapshot predates A's commit
    assert await db.fetch_val("SELECT n FROM counter WHERE id = 1") == 5


async def test_immediate_keeps_the_line_at_begin(sqlite_db: Database) -> None:
    """isolation="immediate" is today's behaviour: BEGIN IMMEDIATE, the gate at BEGIN."""
    db = sqlite_db
    order: list[str] = []
    first_in = asyncio.Event()

    async def first() -> None:
        async with db.transaction(isolation="immediate"):
            order.append("first begun")
            first_in.set()
            await asyncio.sleep(0.3)
            order.append("first done")

    async def second() -> None:
        await first_in.wait()
        async with db.transaction(isolation="immediate"):
            order.append("second begun")

    await asyncio.gather(first(), second())
    assert order == ["first begun", "first done", "second begun"]


async def _read_then_write(db: Database, both_read: asyncio.Barrier) -> None:
    async with db.transaction():
        n = await db.fetch_val("SELECT n FROM counter WHERE id = 1")
        await both_read.wait()
        await db.execute("UPDATE counter SET n = :n WHERE id = 1", {"n": n + 1})


async def test_read_then_write_race_gives_one_conflict(sqlite_db: Database) -> None:
    db = sqlite_db
    barrier = asyncio.Barrier(2)
    race = asyncio.gather(
        _read_then_write(db, barrier), _read_then_write(db, barrier), return_exceptions=True
    )
    results = await asyncio.wait_for(race, 30)
    assert sum(r is None for r in results) == 1
    errors = [r for r in results if r is not None]
    assert len(errors) == 1 and isinstance(errors[0], ConflictError), results
    assert await db.fetch_val("SELECT n FROM counter WHERE id = 1") == 1


async def test_read_then_write_race_with_retry_both_succeed(sqlite_db: Database) -> None:
    db = sqlite_db
    barrier = asyncio.Barrier(2)
    attempts = 0

    @db.transaction(retry=5)
    async def bump() -> None:
        nonlocal attempts
        attempts += 1
        n = await db.fetch_val("SELECT n FROM counter WHERE id = 1")
        if attempts <= 2:
            await asyncio.wait_for(barrier.wait(), 30)  # the first attempts of both race
        await db.execute("UPDATE counter SET n = :n WHERE id = 1", {"n": n + 1})

    await asyncio.wait_for(asyncio.gather(bump(), bump()), 60)
    assert await db.fetch_val("SELECT n FROM counter WHERE id = 1") == 2
    assert attempts == 3  # one of the two was retried once


async def test_many_concurrent_write_transactions_all_succeed(sqlite_db: Database) -> None:
    db = sqlite_db

    async def write(i: int) -> None:
        async with db.transaction():
            await db.execute("INSERT INTO counter VALUES (:id, :n)", {"id": i + 10, "n": i})
            await db.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    await asyncio.gather(*(write(i) for i in range(200)))
    assert await db.fetch_val("SELECT n FROM counter WHERE id = 1") == 200
    assert await db.fetch_val("SELECT count(*) FROM counter") == 201
