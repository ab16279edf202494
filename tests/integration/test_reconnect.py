"""Server restarts, dead idle connections, pre-ping and the two reconnect modes (seed 001)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import backends

from asyncdb import Database, DisconnectionError

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def _pg_ctl(*args: str) -> None:
    bindir, data = os.environ.get("ASYNCDB_PG_BINDIR"), os.environ.get("ASYNCDB_PG_DATA")
    assert bindir and data, "ASYNCDB_PG_BINDIR/ASYNCDB_PG_DATA come from scripts/servers.sh"
    log = str(Path(data).parent / "postgres.log")
    command = [f"{bindir}/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-m", "fast", *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    # no pipes: the server started by pg_ctl would keep them open and hang us
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _start_servers() -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts/servers.sh"), "start"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _idle_sessions(db: Database, backend: str, n: int) -> list[int]:
    """Fill the pool with n connections and return their server session ids."""
    query = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"
    gate = asyncio.Barrier(n)

    async def hold() -> int:
        async with db.connection() as conn:
            await gate.wait()  # all n checked out at once, so n distinct connections
            return int(await conn.fetch_val(query))

    return await asyncio.gather(*(hold() for _ in range(n)))


@backends("postgresql")
async def test_server_restart_costs_new_transactions_nothing(db_url: str, items: str) -> None:
    async with Database(db_url, max_size=5) as db:
        await _idle_sessions(db, "postgresql", 5)
        await asyncio.to_thread(_pg_ctl, "restart")
        for i in range(10):
            async with db.transaction():
                await db.execute("INSERT INTO items (name) VALUES (:n)", {"n": f"after-{i}"})
        assert await db.fetch_val("SELECT count(*) FROM items") == 10
        await _idle_sessions(db, "postgresql", 5)  # all five pooled connections in use again
        assert db.pool_stats()["invalidated"] == 5


@backends("postgresql", "mysql")
async def test_pre_ping_replaces_connections_killed_while_idle(
    db_url: str, items: str, backend: str
) -> None:
    kill = "SELECT pg_terminate_backend(:id)" if backend == "postgresql" else "KILL :id"
    async with Database(db_url, max_size=3, pre_ping=True) as db, Database(db_url) as admin:
        for session in await _idle_sessions(db, backend, 3):
            await admin.execute(kill, {"id": session})
        await asyncio.sleep(0.2)
        gate = asyncio.Barrier(3)

        async def write(i: int) -> None:  # every pooled connection is dead; nobody notices
            async with db.transaction():
                await gate.wait()
                await db.execute("INSERT INTO items (name) VALUES (:n)", {"n": f"n{i}"})

        await asyncio.gather(*(write(i) for i in range(3)))
        assert await db.fetch_val("SELECT count(*) FROM items") == 3
        assert db.pool_stats()["invalidated"] == 3


@backends("mysql")
async def test_without_pre_ping_a_dead_idle_connection_fails_fast_once(
    db_url: str, driver: str
) -> None:
    # aiomysql does not read while idle, so only a ping (or the next query) finds the corpse.
    # asyncmy does read while idle: it has seen the EOF, so the pool replaces the connection
    # at checkout (as with asyncpg) and nothing fails.
    async with Database(db_url, max_size=1, pre_ping=False) as db, Database(db_url) as admin:
        (session,) = await _idle_sessions(db, "mysql", 1)
        await admin.execute("KILL :id", {"id": session})
        await asyncio.sleep(0.2)
        if driver == "asyncmy":
            await asyncio.sleep(1)  # generous: the EOF is delivered by the idle event loop
            async with db.transaction():
                assert await db.fetch_val("SELECT 1") == 1
            assert db.pool_stats()["invalidated"] == 1
        else:
            with pytest.raises(DisconnectionError):
                async with db.transaction():
                    pass
        assert await db.fetch_val("SELECT 1") == 1  # the next one gets a fresh connection


@backends("postgresql")
async def test_reconnect_modes_fail_fast_and_backoff(db_url: str) -> None:
    fast = Database(db_url, min_size=0, reconnect="fail_fast")
    patient = Database(db_url, min_size=0, reconnect="backoff", reconnect_timeout=30)
    await fast.connect()
    await patient.connect()
    try:
        await asyncio.to_thread(_pg_ctl, "stop")
        started = time.monotonic()
        with pytest.raises(DisconnectionError):
            await fast.fetch_val("SELECT 1")
        assert time.monotonic() - started < 5

        async def restart_later() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(_start_servers)

        restarter = asyncio.create_task(restart_later())
        # a script in back-off mode waits for the server instead of failing
        assert await patient.fetch_val("SELECT 7") == 7
        await restarter
        # a fail-fast database may opt into back-off for one transaction
        async with fast.transaction(reconnect="backoff"):
            assert await fast.fetch_val("SELECT 8") == 8
    finally:
        await asyncio.to_thread(_start_servers)
        await fast.disconnect()
        await patient.disconnect()


async def test_connections_past_max_lifetime_are_recycled(db_url: str) -> None:
    async with Database(db_url, min_size=1, max_size=1, max_lifetime=0.3) as db:
        # (not through raw_connection: touching it makes the pool reset the session, which
        # on SQLite means a fresh connection)
        await db.fetch_val("SELECT 1")
        await db.fetch_val("SELECT 1")
        assert db.pool_stats()["created"] == 1  # young: reused
        await asyncio.sleep(0.4)
        async with db.connection() as conn:
            assert db.pool_stats()["created"] == 2  # old: replaced before anyone used it
            assert await conn.fetch_val("SELECT 1") == 1
        stats = db.pool_stats()
        assert stats["created"] == 2 and stats["size"] == 1 and stats["invalidated"] == 0
