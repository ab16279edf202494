"""What asyncmy does better than aiomysql, kept: its protocol reads while the connection is
idle, so a session the server ended is known before the connection is used (as on asyncpg)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import backends

from asyncdb import CommitOutcomeUnknownError, Database, DisconnectionError, Retry


async def _kill_and_wait(admin: Database, raw: Any) -> None:
    """KILL the session of `raw` and wait until asyncmy has seen the close (its EOF)."""
    await admin.execute("KILL :id", {"id": raw.thread_id()})
    for _ in range(500):
        if raw._stream_broken:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("asyncmy never saw the killed session's EOF")


@backends("mysql+asyncmy")
async def test_connection_known_dead_before_commit_is_retryable(db_url: str) -> None:
    """Killed after the last statement and seen closed before COMMIT is sent: the work
    certainly did not commit, so it is a DisconnectionError that `retry=` re-runs."""
    async with Database(db_url, max_size=2) as db, Database(db_url) as admin:
        attempts: list[int] = []

        @db.transaction(retry=Retry(attempts=3, initial=0.01))
        async def work() -> int:
            attempts.append(1)
            value = int(await db.fetch_val("SELECT 7"))
            if len(attempts) == 1:
                await _kill_and_wait(admin, db.connection().raw_connection)
            return value

        assert await work() == 7
        assert len(attempts) == 2


@backends("mysql+asyncmy")
async def test_connection_known_dead_before_commit_raises_disconnection(db_url: str) -> None:
    async with Database(db_url) as db, Database(db_url) as admin:
        with pytest.raises(DisconnectionError) as info:
            async with db.transaction():
                await db.fetch_val("SELECT 1")
                await _kill_and_wait(admin, db.connection().raw_connection)
        assert not isinstance(info.value, CommitOutcomeUnknownError)
        assert await db.fetch_val("SELECT 2") == 2
