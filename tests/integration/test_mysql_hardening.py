"""MySQL/MariaDB hardening: no stacked statements unless asked for, and every error after which
the server closed the session is a disconnect (the connection never goes back to the pool)."""

from __future__ import annotations

import asyncio

import pytest
from conftest import driver_params, server_urls, with_driver

from asyncdb import Database, DisconnectionError, ProgrammingError

pytestmark = [pytest.mark.mysql, pytest.mark.timeout(60)]


@pytest.fixture(params=driver_params("mysql"))
def mysql_url(request: pytest.FixtureRequest) -> str:
    url = server_urls().get("mysql")
    if url is None:
        pytest.skip("no MySQL server configured")
    return with_driver(url, request.param)


async def _table_exists(db: Database, name: str) -> bool:
    count = await db.fetch_val(
        "SELECT COUNT(*) FROM information_schema.tables "
        "WHERE table_schema = DATABASE() AND table_name = :name",
        {"name": name},
    )
    return bool(count)


async def test_stacked_statements_are_refused_by_default(mysql_url: str) -> None:
    async with Database(mysql_url, max_size=1) as db:
        await db.execute("DROP TABLE IF EXISTS victim")
        await db.execute("CREATE TABLE victim (id INTEGER)")
        try:
            with pytest.raises(ProgrammingError):
                await db.execute("SELECT 1; DROP TABLE victim")
            assert await _table_exists(db, "victim")
            assert await db.fetch_val("SELECT 1") == 1  # the connection is still fine
        finally:
            await db.execute("DROP TABLE IF EXISTS victim")


@pytest.mark.parametrize("how", ["url", "keyword"])
async def test_multi_statements_opt_in(mysql_url: str, how: str) -> None:
    url, options = mysql_url, {}
    if how == "url":
        url += ("&" if "?" in url else "?") + "multi_statements=true"
    else:
        options["multi_statements"] = True
    async with Database(url, max_size=1, **options) as db:
        await db.execute("DROP TABLE IF EXISTS victim")
        await db.execute("CREATE TABLE victim (id INTEGER)")
        await db.execute("SELECT 1; DROP TABLE victim")
        assert not await _table_exists(db, "victim")
        assert await db.fetch_val("SELECT 2") == 2  # the second result was read off the line


async def test_packet_too_large_is_a_disconnect(mysql_url: str) -> None:
    """1153: the server sends the error and closes the session."""
    async with Database(mysql_url, max_size=1) as admin:
        before = await admin.fetch_val("SELECT @@GLOBAL.max_allowed_packet")
        await admin.execute("SET GLOBAL max_allowed_packet = 1048576")
        try:
            async with Database(mysql_url, max_size=1, pre_ping=False) as db:
                with pytest.raises(DisconnectionError):
                    await db.fetch_val("SELECT LENGTH(:blob)", {"blob": "x" * 2_000_000})
                assert await db.fetch_val("SELECT 1") == 1
        finally:
            await admin.execute(f"SET GLOBAL max_allowed_packet = {int(before)}")


async def test_idle_timeout_is_a_disconnect(mysql_url: str) -> None:
    """wait_timeout expired: MariaDB closes silently (2013), MySQL 8 says 4031 first."""
    async with Database(mysql_url, max_size=1, pre_ping=False) as db:
        async with db.connection() as conn:
            await conn.execute("SET SESSION wait_timeout = 1")
            await asyncio.sleep(3)
            with pytest.raises(DisconnectionError):
                await conn.fetch_val("SELECT 1")
        assert await db.fetch_val("SELECT 1") == 1


async def test_kill_connection_is_a_disconnect(mysql_url: str) -> None:
    async with (
        Database(mysql_url, max_size=1) as admin,
        Database(mysql_url, max_size=1, pre_ping=False) as db,
    ):
        async with db.connection() as conn:
            session = await conn.fetch_val("SELECT CONNECTION_ID()")
            await admin.execute(f"KILL CONNECTION {int(session)}")
            with pytest.raises(DisconnectionError):
                await conn.fetch_val("SELECT 1")
        assert await db.fetch_val("SELECT 1") == 1
