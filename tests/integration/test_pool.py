"""The pool under load: no deadlock, first come first served, clear timeouts, stats."""

from __future__ import annotations

import asyncio

import pytest

from asyncdb import Database, PoolTimeout

pytestmark = pytest.mark.timeout(120)


async def test_10000_tasks_on_a_pool_of_10(db_url: str) -> None:
    async with Database(db_url, max_size=10, acquire_timeout=60) as db:
        peak = 0

        async def work(i: int) -> int:
            nonlocal peak
            if i % 3 == 0:
                async with db.transaction():
                    value = await db.fetch_val("SELECT :i + 0", {"i": i})
            else:
                value = await db.fetch_val("SELECT :i + 0", {"i": i})
            peak = max(peak, db.pool_stats()["in_use"])
            return int(value)

        results = await asyncio.gather(*(work(i) for i in range(10_000)))
        assert results == list(range(10_000))
        stats = db.pool_stats()
        assert peak <= 10 and stats["size"] <= 10
        assert stats["in_use"] == 0 and stats["waiting"] == 0 and stats["idle"] == stats["size"]
        assert stats["requests"] >= 10_000


async def test_waiters_are_served_first_come_first_served(db_url: str) -> None:
    async with Database(db_url, min_size=1, max_size=1) as db:
        served: list[int] = []
        release = asyncio.Event()

        async def holder() -> None:
            async with db.connection():
                await release.wait()

        async def waiter(i: int) -> None:
            async with db.connection():
                served.append(i)

        hold = asyncio.create_task(holder())
        await asyncio.sleep(0.05)
        waiters = []
        for i in range(20):
            waiters.append(asyncio.create_task(waiter(i)))
            await asyncio.sleep(0)  # each one reaches the queue before the next starts
        await asyncio.sleep(0.05)
        assert db.pool_stats()["waiting"] == 20
        release.set()
        await asyncio.gather(hold, *waiters)
        assert served == list(range(20))


async def test_acquire_timeout_names_the_pool_size_and_the_queue(db_url: str) -> None:
    async with Database(db_url, max_size=1, acquire_timeout=0.2) as db:
        release = asyncio.Event()

        async def holder() -> None:
            async with db.connection():
                await release.wait()

        hold = asyncio.create_task(holder())
        await asyncio.sleep(0.05)
        others = [asyncio.create_task(db.fetch_val("SELECT 1")) for _ in range(3)]
        with pytest.raises(PoolTimeout) as raised:
            await db.fetch_val("SELECT 1")
        message = str(raised.value)
        assert "max_size=1" in message and "in use=1" in message and "waiting" in message
        results = await asyncio.gather(*others, return_exceptions=True)
        assert all(isinstance(r, PoolTimeout) for r in results)
        release.set()
        await hold
        assert await db.fetch_val("SELECT 1") == 1  # the pool is still fine
        assert db.pool_stats()["waiting"] == 0


async def test_pool_stats_count_what_happened(db_url: str, backend: str) -> None:
    async with Database(db_url, min_size=2, max_size=4) as db:
        stats = db.pool_stats()
        assert (stats["size"], stats["idle"], stats["in_use"], stats["created"]) == (2, 2, 0, 2)
        async with db.connection() as conn:
            await conn.fetch_val("SELECT 1")
            stats = db.pool_stats()
            assert (stats["in_use"], stats["idle"]) == (1, 1)
        slow = {
            "postgresql": "SELECT pg_sleep(1)",
            "mysql": "SELECT SLEEP(1)",
            "sqlite": "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
            "WHERE n < 50000000) SELECT count(*) FROM s",
        }[backend]
        cancelled = asyncio.create_task(db.fetch_val(slow))
        await asyncio.sleep(0.1)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await asyncio.sleep(0.05)  # SQLite recovers in the background
        stats = db.pool_stats()
        # a network connection interrupted mid-call is dropped; SQLite's is recovered
        which = "recovered" if backend == "sqlite" else "invalidated"
        assert stats[which] == 1 and stats["in_use"] == 0
