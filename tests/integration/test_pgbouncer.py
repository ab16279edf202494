"""asyncdb behind a real PgBouncer in transaction pooling mode (started by scripts/servers.sh).

asyncpg's named prepared statements do not survive transaction pooling (the next statement
may run on another server connection), so the URL or Database option `statement_cache_size=0`
is required there; this is what the README documents.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from asyncdb import Database

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pgbouncer_url() -> str:
    url = os.environ.get("ASYNCDB_TEST_PGBOUNCER_URL")
    if not url:
        if os.environ.get("ASYNCDB_REQUIRE_ALL_BACKENDS") == "1" or os.environ.get("CI") == "true":
            pytest.fail(
                "ASYNCDB_TEST_PGBOUNCER_URL is not set (scripts/servers.sh starts PgBouncer)"
            )
        pytest.skip("no PgBouncer configured")
    return url


async def test_transaction_pooling_with_statement_cache_off(pgbouncer_url: str) -> None:
    async with Database(f"{pgbouncer_url}?statement_cache_size=0", max_size=30) as db:
        await db.execute("DROP TABLE IF EXISTS bouncer_items")
        await db.execute("CREATE TABLE bouncer_items (id SERIAL PRIMARY KEY, n INTEGER NOT NULL)")
        assert await db.fetch_val("SELECT inet_server_port()") != db.url.port  # really proxied

        @db.transaction()
        async def work(i: int) -> None:
            await db.execute("INSERT INTO bouncer_items (n) VALUES (:n)", {"n": i})
            assert await db.fetch_val("SELECT n FROM bouncer_items WHERE n = :n", {"n": i}) == i
            if i % 5 == 0:
                async with db.transaction():  # a savepoint inside the pooled transaction
                    await db.execute("INSERT INTO bouncer_items (n) VALUES (:n)", {"n": -i})
                    raise ValueError  # rolls back the savepoint, then the whole transaction

        results = await asyncio.gather(*(work(i) for i in range(200)), return_exceptions=True)
        assert sum(isinstance(r, ValueError) for r in results) == 40
        assert [r for r in results if r is not None and not isinstance(r, ValueError)] == []
        assert await db.fetch_val("SELECT count(*) FROM bouncer_items") == 160
        streamed = [r["n"] async for r in db.iterate("SELECT n FROM bouncer_items ORDER BY n")]
        assert len(streamed) == 160
        await db.execute("DROP TABLE bouncer_items")
