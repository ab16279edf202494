"""Cancellation is exact: never lost at a connection hand-over, never swallowed by cleanup."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import backends

from asyncdb import CommitOutcomeUnknownError, Database, DisconnectionError, Retry
from asyncdb._connection import _aclose_quietly

pytestmark = pytest.mark.timeout(120)


async def test_cancel_delivered_with_the_handover_is_not_lost(db_url: str) -> None:
    """Pool of 1: the holder releases and, in the same loop turn, the waiter is cancelled.
    The waiter must raise CancelledError (3.11 wait_for returned the connection instead and
    the cancelled task ran its query) and the connection must go back to the pool."""
    async with Database(db_url, min_size=1, max_size=1) as db:
        holding = asyncio.Event()
        ran: list[int] = []

        async def waiter_body() -> None:
            await holding.wait()
            ran.append(int(await db.fetch_val("SELECT 1")))

        waiter = asyncio.create_task(waiter_body())

        async def holder() -> None:
            async with db.transaction():
                await db.fetch_val("SELECT 1")
                holding.set()
                for _ in range(20):  # let the waiter queue up for the connection
                    await asyncio.sleep(0.01)
                assert db.pool_stats()["waiting"] == 1
            waiter.cancel()  # same loop turn as the release that served the waiter

        await asyncio.create_task(holder())
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert ran == []
        stats = db.pool_stats()
        assert stats["size"] == 1 and stats["in_use"] == 0 and stats["idle"] == 1
        assert await db.fetch_val("SELECT 2") == 2


class _CancelledClose:
    async def aclose(self) -> None:
        raise asyncio.CancelledError


class _FailingClose:
    async def aclose(self) -> None:
        raise OSError("broken pipe")


async def test_closing_an_iteration_never_swallows_a_cancellation() -> None:
    stream: Any = _CancelledClose()
    with pytest.raises(asyncio.CancelledError):
        await _aclose_quietly(stream)
    await _aclose_quietly(_FailingClose())  # errors, unlike cancellation, are suppressed


async def _end_session_and_see_it(admin: Database, raw: Any, driver: str) -> None:
    """End the session of `raw` on the server and wait until the client has seen it close.
    asyncpg and asyncmy read while idle, so they notice before the next statement is sent
    (aiomysql finds out only at its next read: it has no such test)."""
    if driver == "asyncmy":
        await admin.execute("KILL :id", {"id": raw.thread_id()})
        seen: Any = lambda: raw._stream_broken  # noqa: E731
    else:
        await admin.fetch_val("SELECT pg_terminate_backend(:pid)", {"pid": raw.get_server_pid()})
        seen = raw.is_closed
    for _ in range(500):
        if seen():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the client never saw its session end")


@backends("postgresql", "mysql+asyncmy")
async def test_connection_known_dead_before_commit_is_retryable(db_url: str, driver: str) -> None:
    """Killed after the last statement and seen closed before COMMIT is sent: the work
    certainly did not commit, so it is a plain DisconnectionError and `retry=` re-runs it
    (it used to be CommitOutcomeUnknownError, which retry gives up on)."""
    async with Database(db_url, max_size=2) as db, Database(db_url) as admin:
        attempts: list[int] = []

        @db.transaction(retry=Retry(attempts=3, initial=0.01))
        async def work() -> int:
            attempts.append(1)
            value = int(await db.fetch_val("SELECT 7"))
            if len(attempts) == 1:
                await _end_session_and_see_it(admin, db.connection().raw_connection, driver)
            return value

        assert await work() == 7
        assert len(attempts) == 2


@backends("postgresql", "mysql+asyncmy")
async def test_connection_known_dead_before_commit_raises_disconnection(
    db_url: str, driver: str
) -> None:
    async with Database(db_url) as db, Database(db_url) as admin:
        with pytest.raises(DisconnectionError) as info:
            async with db.transaction():
                await db.fetch_val("SELECT 1")
                await _end_session_and_see_it(admin, db.connection().raw_connection, driver)
        assert not isinstance(info.value, CommitOutcomeUnknownError)
        assert await db.fetch_val("SELECT 2") == 2
