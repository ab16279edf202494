"""Pre-ping replaces a connection on any ping failure, not only on a disconnect."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from asyncdb import Database
from tests.conftest import backends


async def _real_query_canceled(db_url: str) -> BaseException:
    """A genuine asyncpg.QueryCanceledError, from a query the server really cancelled."""
    raw = await asyncpg.connect(db_url)
    try:
        await raw.execute("SET statement_timeout = 50")
        with pytest.raises(asyncpg.QueryCanceledError) as info:
            await raw.execute("SELECT pg_sleep(5)")
        return info.value
    finally:
        await raw.close()


@backends("postgresql")
async def test_ping_failing_with_server_error_gets_a_replacement(db_url: str) -> None:
    error = await _real_query_canceled(db_url)
    db = Database(db_url, pre_ping=True, min_size=1, max_size=1)
    await db.connect()
    try:
        first_pid = await db.fetch_val("SELECT pg_backend_pid()")
        backend: Any = db._pool.backend  # type: ignore[union-attr]
        real_ping = backend.ping
        calls = 0

        async def failing_once(raw: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise error  # what a cancel hitting the ping raises (old code: it escaped raw)
            await real_ping(raw)

        backend.ping = failing_once
        before = db.pool_stats()["invalidated"]
        pid = await db.fetch_val("SELECT pg_backend_pid()")
        assert calls >= 1
        assert pid != first_pid  # served by a replacement connection
        assert db.pool_stats()["invalidated"] == before + 1
    finally:
        await db.disconnect()
