"""No session state crosses from one task to the next through a pooled connection.

Every test uses max_size=1, so the second task surely gets the raw connection the first one
used (or the fresh one that replaced it). Task A changes the session, task B (another
asyncio task) must see what a brand-new connection sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from asyncdb import Database, DatabaseError, InterfaceError
from tests.conftest import backends

Probe = Callable[[Database], Awaitable[Any]]


def sql_probe(sql: str) -> Probe:
    async def probe(db: Database) -> Any:
        return await db.fetch_val(sql)

    return probe


def table_probe(name: str) -> Probe:
    """Whether a (temp) table by that name is visible to the session."""

    async def probe(db: Database) -> Any:
        try:
            await db.fetch_all(f"SELECT * FROM {name}")
        except DatabaseError:
            return "missing"
        return "present"

    return probe


PG_STATE = {
    "search_path": ("SET search_path TO pg_catalog", sql_probe("SHOW search_path")),
    "statement_timeout": ("SET statement_timeout = 12345", sql_probe("SHOW statement_timeout")),
    "set_role": ("SET ROLE pg_monitor", sql_probe("SELECT current_user")),
    "session_authorization": (
        "SET SESSION AUTHORIZATION pg_monitor",
        sql_probe("SELECT session_user"),
    ),
    "listen": (
        "LISTEN asyncdb_reset_chan",
        sql_probe("SELECT count(*) FROM pg_listening_channels()"),
    ),
    "advisory_lock": (
        "SELECT pg_advisory_lock(4242)",
        sql_probe(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ),
    ),
    "temp_table": ("CREATE TEMP TABLE reset_tmp (a int)", table_probe("reset_tmp")),
    "prepared": (
        "PREPARE reset_stmt AS SELECT 1",
        sql_probe("SELECT count(*) FROM pg_prepared_statements WHERE from_sql"),
    ),
    "set_config_in_select": (
        "SELECT set_config('application_name', 'leaked', false)",
        sql_probe("SHOW application_name"),
    ),
    "do_block": (
        "DO $$BEGIN PERFORM set_config('work_mem', '7777kB', false); END$$",
        sql_probe("SHOW work_mem"),
    ),
}
MYSQL_STATE = {
    "user_variable": ("SET @reset_leak = 5", sql_probe("SELECT @reset_leak")),
    "user_variable_in_select": ("SELECT @reset_leak2 := 6", sql_probe("SELECT @reset_leak2")),
    "sql_mode": ("SET SESSION sql_mode = 'ANSI_QUOTES'", sql_probe("SELECT @@SESSION.sql_mode")),
    "get_lock": (
        "SELECT GET_LOCK('asyncdb_reset_lock', 0)",
        sql_probe("SELECT IS_USED_LOCK('asyncdb_reset_lock') IS NOT NULL"),
    ),
    "temp_table": ("CREATE TEMPORARY TABLE reset_tmp (a int)", table_probe("reset_tmp")),
}
SQLITE_STATE = {
    "pragma": ("PRAGMA foreign_keys = ON", sql_probe("PRAGMA foreign_keys")),
    "pragma_cache": ("PRAGMA cache_size = -1234", sql_probe("PRAGMA cache_size")),
    "attach": (
        "ATTACH DATABASE ':memory:' AS reset_other",
        sql_probe("SELECT count(*) FROM pragma_database_list WHERE name <> 'temp'"),
    ),
    "temp_table": ("CREATE TEMP TABLE reset_tmp (a int)", table_probe("reset_tmp")),
}
STATE = {"postgresql": PG_STATE, "mysql": MYSQL_STATE, "sqlite": SQLITE_STATE}


async def settled(db: Database) -> None:
    """Wait for the pool's background resets, so counters can be read."""
    assert db._pool is not None
    await asyncio.gather(*list(db._pool._recovering))


async def in_task(coro: Awaitable[Any]) -> Any:
    return await asyncio.ensure_future(coro)


async def session_id(db: Database) -> Any:
    sql = {
        "postgresql": "SELECT pg_backend_pid()",
        "mysql": "SELECT CONNECTION_ID()",
        "sqlite": "SELECT 1",
    }[db.backend_name]
    return await db.fetch_val(sql)


async def check_state_does_not_cross(url: str, backend: str, case: str) -> None:
    statement, probe = STATE[backend][case]
    async with Database(url, max_size=1) as db:
        pristine = await in_task(probe(db))
        first_id = await in_task(session_id(db))

        async def task_a() -> Any:
            async with db.connection():
                await db.execute(statement)
                return await probe(db)

        changed = await in_task(task_a())
        assert changed != pristine  # the statement really changed the session

        async def task_b() -> tuple[Any, Any]:
            return await probe(db), await session_id(db)

        seen, second_id = await in_task(task_b())
        assert seen == pristine
        if backend != "sqlite":
            assert second_id == first_id  # reset in place, not by reconnecting


@backends("postgresql")
@pytest.mark.parametrize("case", PG_STATE)
async def test_postgresql_session_state_does_not_cross_tasks(db_url: str, case: str) -> None:
    await check_state_does_not_cross(db_url, "postgresql", case)


@backends("mysql")
@pytest.mark.parametrize("case", MYSQL_STATE)
async def test_mysql_session_state_does_not_cross_tasks(db_url: str, case: str) -> None:
    await check_state_does_not_cross(db_url, "mysql", case)


@backends("sqlite")
@pytest.mark.parametrize("memory", [False, True], ids=["file", "memory"])
@pytest.mark.parametrize("case", SQLITE_STATE)
async def test_sqlite_session_state_does_not_cross_tasks(
    db_url: str, case: str, memory: bool
) -> None:
    await check_state_does_not_cross("sqlite:///:memory:" if memory else db_url, "sqlite", case)


async def test_common_path_sends_no_reset(db_url: str) -> None:
    async with Database(db_url, max_size=1) as db:
        resets: list[str] = []
        db.add_hook("reset", lambda event, details: resets.append(event))
        await db.execute("DROP TABLE IF EXISTS reset_notes")
        await db.execute("CREATE TABLE reset_notes (id INTEGER PRIMARY KEY, body VARCHAR(20))")
        for i in range(5):
            values = {"id": i + 1, "b": f"n{i}"}
            await in_task(db.execute("INSERT INTO reset_notes VALUES (:id, :b)", values))
            await in_task(db.fetch_all("SELECT * FROM reset_notes WHERE id > :id", {"id": 0}))
            await in_task(db.execute("UPDATE reset_notes SET body = 'x' WHERE id = 1"))
            await in_task(db.fetch_val("WITH t AS (SELECT 1 AS a) SELECT a FROM t"))

            async def tx() -> None:
                async with db.transaction():
                    async with db.transaction():
                        await db.execute("DELETE FROM reset_notes WHERE id = 2")

            await in_task(tx())
        await db.execute("DROP TABLE reset_notes")
        await settled(db)
        assert db.pool_stats()["resets"] == 0
        assert resets == []

        await in_task(db.execute(STATE[db.backend_name]["temp_table"][0]))
        await settled(db)
        assert db.pool_stats()["resets"] == 1
        assert resets == ["reset"]


async def test_always_resets_every_used_connection(db_url: str) -> None:
    async with Database(db_url, max_size=1, reset="always") as db:
        for _ in range(3):
            await in_task(db.fetch_val("SELECT 1"))
        await settled(db)
        assert db.pool_stats()["resets"] == 3


async def test_reset_option_from_url_and_bad_value(db_url: str) -> None:
    sep = "&" if "?" in db_url else "?"
    async with Database(f"{db_url}{sep}reset=always", max_size=1) as db:
        await in_task(db.fetch_val("SELECT 1"))
        await settled(db)
        assert db.pool_stats()["resets"] == 1
    with pytest.raises(InterfaceError, match="reset must be one of auto, always, got 'sometimes'"):
        Database(db_url, reset="sometimes")


async def test_no_reset_with_force_rollback(db_url: str) -> None:
    async with Database(db_url, force_rollback=True, reset="always") as db:
        await db.fetch_val("SELECT 1")
        assert db.pool_stats()["resets"] == 0


async def test_raw_connection_use_marks_dirty(db_url: str) -> None:
    async with Database(db_url, max_size=1) as db:

        async def touch() -> None:
            async with db.connection() as conn:
                assert conn.raw_connection is not None

        await in_task(touch())
        await settled(db)
        assert db.pool_stats()["resets"] == 1


@backends("postgresql", "mysql")
async def test_failing_reset_discards_the_connection(db_url: str, backend: str) -> None:
    """The backend is killed while task A holds a dirty connection: its reset fails (or the
    pool sees it dead first); either way task B gets a fresh, pristine session."""
    statement, probe = STATE[backend]["temp_table" if backend == "mysql" else "search_path"]
    async with Database(db_url, max_size=1) as db, Database(db_url, max_size=1) as admin:
        pristine = await in_task(probe(db))

        async def task_a() -> Any:
            async with db.connection():
                await db.execute(statement)
                sid = await session_id(db)
                kill = "SELECT pg_terminate_backend(:id)" if backend == "postgresql" else "KILL :id"
                await admin.execute(kill, {"id": sid})
                await asyncio.sleep(0.2)
                return sid

        killed = await in_task(task_a())
        seen, sid = await in_task(asyncio.gather(probe(db), session_id(db)))
        assert seen == pristine
        assert sid != killed
        assert db.pool_stats()["invalidated"] >= 1


async def test_reset_that_fails_in_on_connect_discards(db_url: str, backend: str) -> None:
    """A reset re-runs on_connect; when that fails the connection is closed, not reused."""
    calls = 0

    async def on_connect(raw: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("second setup fails")

    dirty = STATE[backend]["temp_table"][0]
    async with Database(db_url, max_size=1, on_connect=on_connect) as db:
        first = await in_task(session_id(db))
        await in_task(db.execute(dirty))
        await settled(db)
        assert db.pool_stats()["invalidated"] == 1
        assert db.pool_stats()["resets"] == 0
        second = await in_task(session_id(db))
        assert calls == 3
        assert await in_task(table_probe("reset_tmp")(db)) == "missing"
        if backend != "sqlite":
            assert second != first


@backends("postgresql")
async def test_asyncpg_statement_cache_survives_reset(db_url: str) -> None:
    async with Database(db_url, max_size=1) as db:
        query = "SELECT CAST(:a AS INTEGER) + 1 AS v"
        assert await in_task(db.fetch_val(query, {"a": 1})) == 2

        async def dirty() -> None:
            async with db.connection() as conn:
                raw = conn.raw_connection
                assert len(raw._stmt_cache) >= 1  # the query above is cached, named
                await db.execute("PREPARE user_made AS SELECT 2")

        await in_task(dirty())
        await settled(db)
        assert db.pool_stats()["resets"] == 1
        for a in range(3):
            assert await in_task(db.fetch_val(query, {"a": a})) == a + 1
        assert (
            await in_task(
                db.fetch_val("SELECT count(*) FROM pg_prepared_statements WHERE from_sql")
            )
            == 0
        )


# -- on_connect ------------------------------------------------------------------------------

ON_CONNECT = {
    "postgresql": ("SHOW application_name", "from_on_connect"),
    "mysql": ("SELECT @on_connect_var", 7),
    "sqlite": ("PRAGMA cache_size", -4321),
}


async def _on_connect(raw: Any) -> None:
    drivers = {cls.__module__.split(".")[0] for cls in type(raw).__mro__}
    if "asyncpg" in drivers:
        await raw.execute("SET application_name = 'from_on_connect'")
    elif drivers & {"aiomysql", "asyncmy"}:
        async with raw.cursor() as cursor:
            await cursor.execute("SET @on_connect_var = 7")
    else:
        await raw.execute("PRAGMA cache_size = -4321")


async def test_on_connect_state_seen_by_every_task_and_survives_reset(
    backend: str, db_url: str
) -> None:
    await check_on_connect(backend, db_url)


async def test_on_connect_state_survives_reset_in_memory() -> None:
    await check_on_connect("sqlite", "sqlite:///:memory:")


async def check_on_connect(backend: str, url: str) -> None:
    probe, expected = ON_CONNECT[backend]
    async with Database(url, max_size=1, on_connect=_on_connect) as db:
        for _ in range(3):
            assert await in_task(db.fetch_val(probe)) == expected
        statement = STATE[backend]["temp_table"][0]
        await in_task(db.execute(statement))
        if backend == "postgresql":
            await in_task(db.execute("SET application_name = 'changed'"))
        await settled(db)
        assert db.pool_stats()["resets"] >= 1
        assert await in_task(db.fetch_val(probe)) == expected


async def test_failing_on_connect_surfaces_clearly(db_url: str) -> None:
    async def broken(raw: Any) -> None:
        raise ValueError("bad codec setup")

    db = Database(db_url, on_connect=broken, reconnect="backoff", reconnect_timeout=30)
    with pytest.raises(InterfaceError, match="on_connect failed: ValueError: bad codec setup"):
        await asyncio.wait_for(db.connect(), 10)  # not retried as a disconnect
    assert not db.is_connected

    lazy = Database(db_url, on_connect=broken, min_size=0)
    async with lazy:
        with pytest.raises(InterfaceError, match="on_connect failed"):
            await lazy.fetch_val("SELECT 1")
        assert lazy.pool_stats()["size"] == 0


def test_on_connect_must_be_callable(db_url: str) -> None:
    with pytest.raises(InterfaceError, match="on_connect must be an async callable"):
        Database(db_url, on_connect="SET x = 1")  # type: ignore[arg-type]
