"""Transactions and task scoping: what concurrent requests rely on."""

from __future__ import annotations

import asyncio
import gc

import pytest
from conftest import backends

from asyncdb import ConflictError, Connection, Database, InterfaceError, Rollback, Transaction

pytestmark = pytest.mark.timeout(120)


async def count(db: Database, where: str = "1=1") -> int:
    return int(await db.fetch_val(f"SELECT count(*) FROM items WHERE {where}"))


async def test_seed_003_concurrent_decorated_transactions(db: Database, items: str) -> None:
    """200 concurrent tasks each run a decorated transaction: all succeed, none bleed."""

    @db.transaction()
    async def create(i: int) -> None:
        await db.execute("INSERT INTO items (name, value) VALUES (:n, :v)", {"n": f"t{i}", "v": i})
        await asyncio.sleep(0)
        assert await db.fetch_val("SELECT value FROM items WHERE name = :n", {"n": f"t{i}"}) == i
        if i % 10 == 0:
            raise RuntimeError("roll this one back")

    results = await asyncio.gather(*(create(i) for i in range(200)), return_exceptions=True)
    failures = [r for r in results if r is not None]
    assert len(failures) == 20 and all(isinstance(r, RuntimeError) for r in failures)
    assert await count(db) == 180
    assert await count(db, "value % 10 = 0") == 0
    stats = db.pool_stats()
    assert stats["in_use"] == 0 and stats["waiting"] == 0


async def test_uncommitted_write_is_invisible_to_another_task(db: Database, items: str) -> None:
    written = asyncio.Event()
    checked = asyncio.Event()

    async def writer() -> None:
        async with db.transaction():
            await db.execute("INSERT INTO items (name) VALUES ('secret')")
            written.set()
            await checked.wait()

    async def reader() -> int:
        await written.wait()
        try:
            return await count(db, "name = 'secret'")
        finally:
            checked.set()

    _, seen = await asyncio.gather(writer(), reader())
    assert seen == 0
    assert await count(db, "name = 'secret'") == 1


async def test_nested_savepoint_rollback_keeps_outer_writes(db: Database, items: str) -> None:
    async with db.transaction():
        await db.execute("INSERT INTO items (name) VALUES ('outer')")
        with pytest.raises(ValueError):
            async with db.transaction():
                await db.execute("INSERT INTO items (name) VALUES ('inner')")
                raise ValueError
        async with db.transaction():
            await db.execute("INSERT INTO items (name) VALUES ('inner2')")
            raise Rollback  # quiet rollback of the savepoint only
        async with db.transaction():
            await db.execute("INSERT INTO items (name) VALUES ('kept')")
    names = [r["name"] for r in await db.fetch_all("SELECT name FROM items ORDER BY name")]
    assert names == ["kept", "outer"]


async def test_manual_transaction_and_out_of_order_end(db: Database, items: str) -> None:
    outer = await db.transaction().start()
    inner = await db.transaction().start()
    await db.execute("INSERT INTO items (name) VALUES ('x')")
    with pytest.raises(InterfaceError, match="out of order"):
        await outer.commit()
    await inner.commit()
    await outer.rollback()
    assert await count(db) == 0
    with pytest.raises(InterfaceError, match="not active"):
        await outer.commit()
    tx = await db.transaction()  # awaiting a transaction starts it, as in encode/databases
    await db.execute("INSERT INTO items (name) VALUES ('y')")
    await tx.commit()
    assert await count(db) == 1


async def test_handed_over_connection_joins_parent_transaction(db: Database, items: str) -> None:
    async def child_on(conn: Connection) -> None:
        await conn.execute("INSERT INTO items (name) VALUES ('via-parent')")

    async def plain_child() -> int:
        # its own connection: it cannot see the parent's uncommitted row
        return await count(db, "name = 'via-parent'")

    async with db.connection() as conn:
        async with conn.transaction():
            await asyncio.create_task(child_on(conn))
            assert await conn.fetch_val("SELECT count(*) FROM items WHERE name = 'via-parent'") == 1
            assert await asyncio.create_task(plain_child()) == 0
            raise_rollback = True
            if raise_rollback:
                await conn.execute("INSERT INTO items (name) VALUES ('parent-own')")
    assert await count(db) == 2


async def test_handed_over_connection_rolls_back_with_parent(db: Database, items: str) -> None:
    async def child(conn: Connection) -> None:
        async with conn.transaction():  # a savepoint
            await conn.execute("INSERT INTO items (name) VALUES ('child')")

    async with db.connection() as conn:
        async with conn.transaction():
            await asyncio.gather(*(asyncio.create_task(child(conn)) for _ in range(1)))
            raise Rollback
    assert await count(db) == 0


async def test_concurrent_children_on_handed_connection_are_serialized(
    db: Database, items: str
) -> None:
    async def child(conn: Connection, i: int) -> None:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO items (name, value) VALUES (:n, :v)", {"n": f"c{i}", "v": i}
            )
            await asyncio.sleep(0.001)
            if i % 2:
                raise Rollback

    async with db.connection() as conn:
        await asyncio.gather(*(child(conn, i) for i in range(20)))
    assert await count(db) == 10
    assert await count(db, "value % 2 = 1") == 0


async def test_child_task_context_never_changes_parent_stack(db: Database, items: str) -> None:
    from asyncdb._context import transaction_stack

    async with db.transaction() as outer:
        await db.execute("INSERT INTO items (name) VALUES ('parent')")
        parent_conn = db.connection()

        async def child() -> int:
            # a plain child task: its own connection and its own (empty) stack
            assert db.connection() is not parent_conn
            assert transaction_stack(db.connection()) == ()
            async with db.transaction(readonly=True) as inner:
                assert transaction_stack(db.connection()) == (inner,)
                return await count(db, "name = 'parent'")

        assert await asyncio.create_task(child()) == 0
        assert transaction_stack(parent_conn) == (outer,)
        assert outer.is_active
    assert await count(db) == 1


async def test_10000_short_tasks_leave_nothing_checked_out(db: Database, items: str) -> None:
    async def short(i: int) -> None:
        if i % 2:
            await db.fetch_val("SELECT 1")
        else:
            async with db.transaction():
                await db.fetch_val("SELECT 1")

    for start in range(0, 10_000, 1000):
        await asyncio.gather(*(short(i) for i in range(start, start + 1000)))
    stats = db.pool_stats()
    assert stats["in_use"] == 0
    assert stats["idle"] == stats["size"] <= stats["max_size"]
    await asyncio.sleep(0)  # asyncio keeps the last awaited gather (and its tasks) until then
    gc.collect()
    assert len(db._connections) == 0


async def test_connection_is_released_when_task_is_done_not_at_gc(db: Database) -> None:
    gc.disable()
    try:

        async def use() -> None:
            await db.fetch_val("SELECT 1")
            assert db.pool_stats()["in_use"] == 0

        task = asyncio.create_task(use())
        await task
        assert db.pool_stats()["in_use"] == 0
    finally:
        gc.enable()


async def test_force_rollback_leaves_nothing_behind(db_url: str, items: str, db: Database) -> None:
    async with Database(db_url, force_rollback=True) as test_db:

        @test_db.transaction()
        async def work(i: int) -> None:
            await test_db.execute(
                "INSERT INTO items (name, value) VALUES (:n, :v)", {"n": f"f{i}", "v": i}
            )
            if i == 3:
                raise RuntimeError

        results = await asyncio.gather(*(work(i) for i in range(10)), return_exceptions=True)
        assert sum(isinstance(r, RuntimeError) for r in results) == 1
        await test_db.execute("INSERT INTO items (name) VALUES ('plain')")
        assert await test_db.fetch_val("SELECT count(*) FROM items") == 10
    assert await count(db) == 0


async def test_isolation_and_readonly_options(db: Database, items: str, backend: str) -> None:
    async with db.transaction(isolation="serializable"):
        await db.execute("INSERT INTO items (name) VALUES ('iso')")
    async with db.transaction(readonly=True):
        assert await count(db) == 1
    with pytest.raises(InterfaceError, match="unknown isolation level 'sometimes'"):
        async with db.transaction(isolation="sometimes"):
            pass
    assert db.pool_stats()["in_use"] == 0


async def test_decorator_requires_coroutine_function(db: Database) -> None:
    with pytest.raises(InterfaceError, match="async def"):
        db.transaction()(lambda: None)  # type: ignore[arg-type]
    assert isinstance(db.transaction(), Transaction)


async def test_disconnect_and_connect_are_idempotent(db_url: str) -> None:
    database = Database(db_url)
    await database.disconnect()
    await database.connect()
    await database.connect()
    assert database.is_connected
    assert await database.fetch_val("SELECT 1") == 1
    await database.disconnect()
    await database.disconnect()
    assert not database.is_connected
    with pytest.raises(InterfaceError, match="not connected"):
        await database.fetch_val("SELECT 1")


@backends("sqlite")
async def test_sqlite_writer_waiting_on_its_own_parent_gets_a_clear_error(db_url: str) -> None:
    # SQLite admits one writer: write transactions queue in the event loop (not by polling
    # the file lock); one that waits on a writer which is waiting for it fails, not hangs
    async with Database(f"{db_url}?busy_timeout=0.5") as db:
        await db.execute("CREATE TABLE w (n INTEGER)")
        async with db.transaction():
            await db.execute("INSERT INTO w VALUES (1)")

            async def child() -> None:
                async with db.transaction():
                    await db.execute("INSERT INTO w VALUES (2)")

            with pytest.raises(ConflictError, match="database is locked"):
                await asyncio.create_task(child())
        assert await db.fetch_val("SELECT count(*) FROM w") == 1
        assert db.pool_stats()["in_use"] == 0


async def test_tasks_sharing_a_handed_connection_never_interleave_on_the_wire(db: Database) -> None:
    async def ask(conn: Connection, i: int) -> int:
        return int(await conn.fetch_val("SELECT :i + 0", {"i": i}))

    async with db.connection() as conn:
        tasks = [asyncio.create_task(ask(conn, i)) for i in range(100)]
        assert await asyncio.gather(*tasks) == list(range(100))
        assert db.pool_stats()["in_use"] == 1  # one connection served all hundred tasks


async def test_a_transaction_opened_with_plain_sql_never_reaches_the_next_user(
    db: Database, items: str, backend: str
) -> None:
    begin = "BEGIN IMMEDIATE" if backend == "sqlite" else "BEGIN"
    async with db.connection() as conn:
        await conn.execute(begin)  # not through transaction(): asyncdb does not track it
        await conn.execute("INSERT INTO items (name) VALUES ('half')")
    # left with the transaction open: the connection is discarded, never handed on
    assert db.pool_stats()["in_use"] == 0
    assert await count(db) == 0
    await db.execute(begin)  # its connection goes back after the statement: same thing
    await db.execute("INSERT INTO items (name) VALUES ('autocommitted')")
    async with Database(db.url.render(hide_password=False)) as other:
        assert await other.fetch_val("SELECT count(*) FROM items") == 1
