"""Drop-in compatibility with encode/databases: execute() results, force_rollback()."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
import sqlalchemy as sa
from conftest import backends

from asyncdb import Database, DatabaseError, ExecuteResult, InterfaceError, ProgrammingError

items_table = sa.table(
    "items", sa.column("id", sa.Integer), sa.column("name"), sa.column("value", sa.Integer)
)


def _inserted_id(backend: str, expected: int) -> int | None:
    """databases returns lastrowid after an INSERT, except on PostgreSQL (no RETURNING)."""
    return None if backend == "postgresql" else expected


def _count(backend: str, n: int) -> int | None:
    """databases returns the affected row count, except on PostgreSQL (None)."""
    return None if backend == "postgresql" else n


async def test_execute_plain_sql_matches_databases(db: Database, items: str, backend: str) -> None:
    insert = "INSERT INTO items (name, value) VALUES (:n, :v)"
    for i in (1, 2, 3):
        assert await db.execute(insert, {"n": f"n{i}", "v": i}) == _inserted_id(backend, i)
    # The old answer here was a stale lastrowid (3 on SQLite, 0 on MariaDB).
    update = "UPDATE items SET value = value + 10 WHERE id <= :k"
    assert await db.execute(update, {"k": 2}) == _count(backend, 2)
    assert await db.execute(update, {"k": 0}) == _count(backend, 0)
    delete = "DELETE FROM items WHERE id = :k"
    assert await db.execute(delete, {"k": 1}) == _count(backend, 1)
    assert await db.execute(delete, {"k": 1}) == _count(backend, 0)
    # The idiom that used to break silently: a DELETE of nothing is falsy.
    assert not await db.execute(delete, {"k": 99})


async def test_execute_core_matches_databases(db: Database, items: str, backend: str) -> None:
    for i in (1, 2):
        query = items_table.insert().values(name=f"n{i}", value=i)
        assert await db.execute(query) == _inserted_id(backend, i)
    update = items_table.update().values(value=items_table.c.value + 1)
    assert await db.execute(update) == _count(backend, 2)
    none = items_table.update().where(items_table.c.id == 99).values(value=0)
    assert await db.execute(none) == _count(backend, 0)
    delete = items_table.delete().where(items_table.c.id == 2)
    assert await db.execute(delete) == _count(backend, 1)
    assert await db.execute(delete) == _count(backend, 0)


async def test_execute_result_numbers(db: Database, items: str, backend: str) -> None:
    insert = "INSERT INTO items (name, value) VALUES (:n, :v)"
    first = await db.execute_result(insert, {"n": "a", "v": 1})
    assert isinstance(first, ExecuteResult)
    assert first.rowcount == 1
    assert first.lastrowid == (None if backend == "postgresql" else 1)
    assert first.value is None
    await db.execute(insert, {"n": "b", "v": 2})
    update = await db.execute_result("UPDATE items SET value = value + 5", {})
    assert (update.rowcount, update.lastrowid, update.value) == (2, None, None)
    nothing = await db.execute_result("DELETE FROM items WHERE id = 99")
    assert (nothing.rowcount, nothing.lastrowid) == (0, None)
    with pytest.raises(AttributeError):
        update.rowcount = 3  # type: ignore[misc]
    async with db.connection() as connection:
        deleted = await connection.execute_result("DELETE FROM items WHERE name = 'a'")
        assert deleted.rowcount == 1


@backends("postgresql", "sqlite")
async def test_insert_returning(db: Database, items: str, backend: str) -> None:
    if backend == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        pytest.skip("RETURNING needs SQLite 3.35")
    await db.execute("INSERT INTO items (name) VALUES ('first')")
    returning = "INSERT INTO items (name) VALUES (:n) RETURNING id"
    # databases: the returned value on PostgreSQL, lastrowid on SQLite; the same id here.
    assert await db.execute(returning, {"n": "x"}) == 2
    result = await db.execute_result(returning, {"n": "y"})
    assert result.rowcount == 1
    assert result.value == 3
    assert result.lastrowid == (None if backend == "postgresql" else 3)


async def test_force_rollback_context_manager(db_url: str, backend: str) -> None:
    database = Database(db_url)
    assert not database.force_rollback
    async with database:
        await database.execute("DROP TABLE IF EXISTS dropin_fr")
        await database.execute("CREATE TABLE dropin_fr (name VARCHAR(20))")
    try:
        with database.force_rollback():
            assert database.force_rollback
            async with database:
                await database.execute("INSERT INTO dropin_fr VALUES ('gone')")
                assert await database.fetch_val("SELECT COUNT(*) FROM dropin_fr") == 1
            async with database:  # every connect inside the block rolls back
                assert await database.fetch_val("SELECT COUNT(*) FROM dropin_fr") == 0
        assert not database.force_rollback
        async with database:
            await database.execute("INSERT INTO dropin_fr VALUES ('kept')")
        async with database:
            assert await database.fetch_val("SELECT name FROM dropin_fr") == "kept"
    finally:
        async with database:
            await database.execute("DROP TABLE IF EXISTS dropin_fr")


async def test_force_rollback_constructor_and_nesting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    database = Database(f"sqlite:///{tmp_path / 'fr.sqlite3'}", force_rollback=True)
    assert database.force_rollback
    assert bool(database.force_rollback) is True
    with database.force_rollback():
        assert database.force_rollback
    assert database.force_rollback  # restored to the constructor's mode, not to False
    with pytest.raises(RuntimeError):
        with database.force_rollback():
            raise RuntimeError
    assert database.force_rollback


# -- SQLite URI filenames (no server needed) ------------------------------------------------

SHARED_MEMORY = "sqlite:///file:dropin_mem?mode=memory&cache=shared&uri=true"


async def test_sqlite_shared_memory_is_one_database_while_connected() -> None:
    first, second = Database(SHARED_MEMORY), Database(SHARED_MEMORY)
    async with first:
        await first.execute("CREATE TABLE t (x INTEGER)")
        await first.execute("INSERT INTO t VALUES (1)")

        async def count() -> int:
            return int(await first.fetch_val("SELECT COUNT(*) FROM t"))

        assert await asyncio.gather(count(), count()) == [1, 1]  # every task, one database
        async with second:  # concurrently: the same shared-cache database, as in SQLite
            assert await second.fetch_val("SELECT x FROM t") == 1
    # Gone once every connection to it closed: nothing keeps a reference.
    third = Database(SHARED_MEMORY)
    async with third:
        with pytest.raises(ProgrammingError):
            await third.fetch_val("SELECT x FROM t")


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("sqlite:///file:dropin_kw?mode=memory&cache=shared", {"uri": True}),  # databases' form
        ("sqlite:///file::memory:?cache=shared", {}),
    ],
)
async def test_sqlite_memory_uri_forms(url: str, options: dict[str, object]) -> None:
    database = Database(url, **options)
    async with database:
        await database.execute("CREATE TABLE t (x INTEGER)")

        async def insert(i: int) -> None:
            async with database.transaction():
                await database.execute("INSERT INTO t VALUES (:i)", {"i": i})

        await asyncio.gather(*(insert(i) for i in range(20)))  # every task, one database
        assert await database.fetch_val("SELECT COUNT(*) FROM t") == 20
        assert database.pool_stats()["max_size"] == 1
    async with Database(url, **options) as later:
        with pytest.raises(ProgrammingError):
            await later.fetch_val("SELECT x FROM t")


async def test_sqlite_mode_ro_refuses_writes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "ro.sqlite3"
    async with Database(f"sqlite:///{path}") as writer:
        await writer.execute("CREATE TABLE t (x INTEGER)")
        await writer.execute("INSERT INTO t VALUES (7)")
    async with Database(f"sqlite:///{path}?mode=ro") as reader:
        assert await reader.fetch_val("SELECT x FROM t") == 7
        with pytest.raises(DatabaseError, match="readonly"):
            await reader.execute("INSERT INTO t VALUES (8)")
        assert await reader.fetch_val("SELECT COUNT(*) FROM t") == 1


async def test_sqlite_mode_rw_does_not_create(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "missing.sqlite3"
    with pytest.raises(DatabaseError):
        async with Database(f"sqlite:///{path}?mode=rw"):
            pass
    assert not path.exists()
    async with Database(f"sqlite:///{path}?mode=rwc") as database:
        await database.execute("CREATE TABLE t (x INTEGER)")
    assert path.exists()


@pytest.mark.parametrize(
    "query", ["mode=readonly", "cache=public", "uri=maybe", "foo=1", "mode=memory&bar=2"]
)
def test_sqlite_bad_options_are_interface_errors(query: str) -> None:
    with pytest.raises(InterfaceError):
        Database(f"sqlite:///file:x?{query}")
