"""iterate() on MySQL reads rows off the socket as they are asked for (an unbuffered cursor),
with either driver: the Python memory it needs does not grow with the size of the result."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest
from conftest import backends

from asyncdb import Database

pytestmark = pytest.mark.timeout(600)

QUERY = (
    "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :total) "
    "SELECT n, 'sixteen-byte-pad' AS pad FROM seq"
)


async def _peak_mib(db: Database, total: int, pause_every: int = 0) -> float:
    """Peak Python memory (MiB) while iterating `total` rows; checks every row arrived.
    With `pause_every`, the consumer sleeps a little every that many rows (a slow consumer:
    the server's rows keep arriving meanwhile)."""
    async with db.connection() as conn:
        await conn.execute("SET SESSION max_recursive_iterations = 2000000")
        tracemalloc.start()
        try:
            count = checksum = 0
            async for row in conn.iterate(QUERY, {"total": total}):
                count += 1
                checksum += row["n"]
                if pause_every and count % pause_every == 0:
                    await asyncio.sleep(0.005)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    assert (count, checksum) == (total, total * (total + 1) // 2)
    return peak


@backends("mysql")
async def test_iterate_memory_is_flat(db: Database, driver: str) -> None:
    # 1M rows on asyncmy. aiomysql parses every row in Python, ~6x slower (about 45 s for 1M
    # under tracemalloc on a busy 2-core machine), so it streams 200k: held in memory, those
    # would still take ~30 MiB, far above the bound.
    total = 1_000_000 if driver == "asyncmy" else 200_000
    small = await _peak_mib(db, 10_000)
    large = await _peak_mib(db, total)
    # A buffered result of this size would take 30-150 MiB; streaming stays near the small one.
    assert large < small + 8, (small, large)


@backends("mysql")
async def test_a_slow_consumer_does_not_buffer_the_result(db: Database) -> None:
    """The server sends faster than the loop body consumes: reading must pause (asyncmy's
    protocol alone never pauses, so the whole result would pile up in its buffer)."""
    small = await _peak_mib(db, 10_000)
    slow = await _peak_mib(db, 200_000, pause_every=1_000)  # 200 pauses of 5 ms
    # buffered, these 200k rows take ~20 MiB of Python objects
    assert slow < small + 8, (small, slow)
