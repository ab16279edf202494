"""Failure semantics, each failure caused for real on a real server (issue 3, seeds 000-004)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator

import pytest
from conftest import backends
from proxy import TcpProxy

from asyncdb import (
    CommitOutcomeUnknownError,
    ConflictError,
    Database,
    DatabaseURL,
    DisconnectionError,
    IntegrityError,
    Retry,
    TransactionAbortedError,
)

pytestmark = pytest.mark.timeout(120)
SERVERS = ("postgresql", "mysql")


def servers_only(func):  # type: ignore[no-untyped-def]
    """Run a test on PostgreSQL and MariaDB only (it needs a server session to break)."""
    func.backends = SERVERS
    return func


async def session_id(conn_or_db: object, backend: str) -> int:
    query = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"
    return int(await conn_or_db.fetch_val(query))  # type: ignore[attr-defined]


@pytest.fixture
async def admin(db_url: str, backend: str) -> AsyncIterator[Database]:
    async with Database(db_url, max_size=2) as database:
        yield database


async def kill(admin: Database, backend: str, pid: int) -> None:
    if backend == "postgresql":
        assert await admin.fetch_val("SELECT pg_terminate_backend(:pid)", {"pid": pid})
    else:
        await admin.execute(f"KILL {int(pid)}")
    await asyncio.sleep(0.2)


async def count(db: Database, where: str = "1=1") -> int:
    return int(await db.fetch_val(f"SELECT count(*) FROM items WHERE {where}"))


# -- disconnects -------------------------------------------------------------------------


@servers_only
async def test_kill_mid_transaction_dooms_it(
    db: Database, items: str, admin: Database, backend: str
) -> None:
    with pytest.raises(DisconnectionError) as raised:
        async with db.transaction():
            await db.execute("INSERT INTO items (name) VALUES ('before')")
            await kill(admin, backend, await session_id(db, backend))
            with pytest.raises(DisconnectionError) as first:
                await db.execute("INSERT INTO items (name) VALUES ('after')")
            assert first.value.orig is not None
            # caught and written on: refused, never run on a silently new connection
            with pytest.raises(DisconnectionError):
                await db.execute("INSERT INTO items (name) VALUES ('written-on')")
        # leaving the block commits: that must fail too, with the cause chained
    assert "cannot commit" in str(raised.value)
    assert isinstance(raised.value.__cause__, DisconnectionError)
    assert await count(db) == 0  # a fresh connection outside the transaction works
    stats = db.pool_stats()
    assert stats["invalidated"] >= 1 and stats["in_use"] == 0


@servers_only
async def test_kill_mid_savepoint_reports_the_disconnect(
    db: Database, items: str, admin: Database, backend: str
) -> None:
    with pytest.raises(DisconnectionError) as raised:
        async with db.transaction():
            await db.execute("INSERT INTO items (name) VALUES ('outer')")
            async with db.transaction():
                await kill(admin, backend, await session_id(db, backend))
                await db.execute("INSERT INTO items (name) VALUES ('inner')")
    # seed 000: the user sees the disconnect, not "savepoint does not exist" from clean-up
    assert "savepoint" not in str(raised.value).lower()
    assert raised.value.orig is not None
    assert await count(db) == 0
    assert db.pool_stats()["in_use"] == 0


@servers_only
async def test_savepoint_rollback_on_a_dead_line_reports_the_disconnect_with_the_cause(
    db: Database, items: str, admin: Database, backend: str
) -> None:
    await db.execute("INSERT INTO items (name) VALUES ('taken')")
    with pytest.raises(DisconnectionError) as raised:
        async with db.transaction():
            async with db.transaction():
                pid = await session_id(db, backend)
                try:
                    await db.execute("INSERT INTO items (name) VALUES ('taken')")
                finally:
                    await kill(admin, backend, pid)  # dies before the rollback to savepoint
    # seed 000: the clean-up failed on the dead line; the user sees that, with the error
    # that started it in the chain the traceback prints
    chain, link = [], raised.value
    while link is not None:
        chain.append(link)
        link = link.__cause__ or link.__context__
    assert any(isinstance(e, IntegrityError) for e in chain)
    assert "savepoint" not in str(raised.value).lower()
    assert db.pool_stats()["in_use"] == 0
    assert await count(db) == 1


@servers_only
async def test_kill_mid_iterate(db: Database, items: str, admin: Database, backend: str) -> None:
    if backend == "postgresql":
        query = "SELECT g FROM generate_series(1, 5000000) AS g"
    else:
        await db.execute("DROP TABLE IF EXISTS nums")
        await db.execute("CREATE TABLE nums (n INTEGER)")
        await db.execute_many("INSERT INTO nums VALUES (:n)", [{"n": i} for i in range(3000)])
        query = "SELECT a.n FROM nums a CROSS JOIN nums b"
    seen = 0
    with pytest.raises(DisconnectionError):
        async with db.connection() as conn:
            pid = await session_id(conn, backend)
            async for _ in conn.iterate(query):
                seen += 1
                if seen == 10:
                    await kill(admin, backend, pid)
    assert seen < 4_000_000
    assert await db.fetch_val("SELECT 1") == 1
    assert db.pool_stats()["in_use"] == 0


@servers_only
async def test_proxy_cut_mid_result_then_recovers(db_url: str, backend: str) -> None:
    url = DatabaseURL(db_url)
    proxy = await TcpProxy(url.hostname or "127.0.0.1", url.port or 0).start()
    try:
        async with Database(url.replace(port=proxy.port), pre_ping=False) as db:
            big = (
                "SELECT repeat('x', 1000) FROM generate_series(1, 20000)"
                if backend == "postgresql"
                else "WITH RECURSIVE s(n) AS "
                "(SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 999) "
                "SELECT repeat('x', 1000) FROM s"
            )
            assert await db.fetch_val("SELECT 1") == 1

            async def cut_soon() -> None:
                await asyncio.sleep(0.005)
                proxy.cut()

            cutter = asyncio.create_task(cut_soon())
            with pytest.raises(DisconnectionError):
                async with db.connection() as conn:  # held: the cut lands on this line
                    for _ in range(200):
                        await conn.fetch_all(big)
            await cutter
            assert db.pool_stats()["invalidated"] >= 1
            assert await db.fetch_val("SELECT 2") == 2  # outside a transaction: a fresh line
    finally:
        await proxy.close()


@servers_only
async def test_connection_lost_during_commit_is_commit_outcome_unknown(
    db_url: str, items: str, db: Database, backend: str
) -> None:
    url = DatabaseURL(db_url)
    proxy = await TcpProxy(url.hostname or "127.0.0.1", url.port or 0).start()
    runs = 0
    try:
        # the proxy must read the protocol in clear text: the test servers also offer TLS
        plain = Database(url.replace(port=proxy.port), pre_ping=False, ssl=False)
        async with plain as proxied:

            @proxied.transaction(retry=Retry(attempts=5, initial=0.01))
            async def write() -> None:
                nonlocal runs
                runs += 1
                await proxied.execute("INSERT INTO items (name) VALUES ('once')")
                proxy.cut_after(b"COMMIT")

            with pytest.raises(CommitOutcomeUnknownError):
                await write()
    finally:
        await proxy.close()
    assert runs == 1  # never retried: it did commit
    assert await count(db, "name = 'once'") == 1


# -- errors inside transactions ---------------------------------------------------------------


async def test_error_then_write_on_never_commits_half(
    db: Database, items: str, backend: str
) -> None:
    await db.execute("INSERT INTO items (name) VALUES ('taken')")
    if backend == "postgresql":
        # any error aborts a PostgreSQL transaction: COMMIT would silently roll back
        with pytest.raises(TransactionAbortedError) as raised:
            async with db.transaction():
                await db.execute("INSERT INTO items (name) VALUES ('first')")
                with pytest.raises(IntegrityError):
                    await db.execute("INSERT INTO items (name) VALUES ('taken')")
                with pytest.raises(TransactionAbortedError) as refused:
                    await db.execute("INSERT INTO items (name) VALUES ('second')")
                assert isinstance(refused.value.__cause__, IntegrityError)
        assert "cannot commit" in str(raised.value)
        assert await count(db) == 1
    else:
        # MySQL and SQLite undo only the failed statement: the transaction goes on
        async with db.transaction():
            await db.execute("INSERT INTO items (name) VALUES ('first')")
            with pytest.raises(IntegrityError):
                await db.execute("INSERT INTO items (name) VALUES ('taken')")
            await db.execute("INSERT INTO items (name) VALUES ('second')")
        assert await count(db) == 3


async def test_rollback_to_savepoint_makes_outer_usable(db: Database, items: str) -> None:
    await db.execute("INSERT INTO items (name) VALUES ('taken')")
    async with db.transaction():
        await db.execute("INSERT INTO items (name) VALUES ('outer')")
        with pytest.raises(IntegrityError):
            async with db.transaction():
                await db.execute("INSERT INTO items (name) VALUES ('inner')")
                await db.execute("INSERT INTO items (name) VALUES ('taken')")
        await db.execute("INSERT INTO items (name) VALUES ('after')")
    names = sorted(r["name"] for r in await db.fetch_all("SELECT name FROM items"))
    assert names == ["after", "outer", "taken"]


@servers_only
async def test_deadlock_victim_is_refused_and_rolled_back(
    db_url: str, items: str, db: Database, backend: str
) -> None:
    await db.execute_many(
        "INSERT INTO items (name, value) VALUES (:n, 0)", [{"n": "a"}, {"n": "b"}]
    )
    both_locked = asyncio.Barrier(2)
    outcome: dict[str, str] = {}

    async def worker(first: str, second: str) -> None:
        try:
            async with db.transaction():
                await db.execute("INSERT INTO items (name) VALUES (:n)", {"n": f"by-{first}"})
                await db.execute("UPDATE items SET value = 1 WHERE name = :n", {"n": first})
                await both_locked.wait()
                try:
                    await db.execute("UPDATE items SET value = 2 WHERE name = :n", {"n": second})
                except ConflictError:
                    outcome[first] = "victim"
                    # written on after the deadlock: must be refused, not auto-committed
                    with pytest.raises(TransactionAbortedError):
                        await db.execute("INSERT INTO items (name) VALUES ('sneaky')")
                    raise
                outcome[first] = "winner"
        except ConflictError:
            pass

    await asyncio.gather(worker("a", "b"), worker("b", "a"))
    assert sorted(outcome.values()) == ["victim", "winner"]
    victim = next(k for k, v in outcome.items() if v == "victim")
    winner = next(k for k, v in outcome.items() if v == "winner")
    assert await count(db, "name = 'sneaky'") == 0
    assert await count(db, f"name = 'by-{victim}'") == 0
    assert await count(db, f"name = 'by-{winner}'") == 1


@servers_only
async def test_retry_reruns_the_transaction_after_a_conflict(
    db: Database, items: str, backend: str
) -> None:
    await db.execute("INSERT INTO items (name, value) VALUES ('counter', 0)")
    attempts = 0

    @db.transaction(isolation="serializable", retry=Retry(attempts=10, initial=0.01))
    async def increment() -> None:
        nonlocal attempts
        attempts += 1
        value = await db.fetch_val("SELECT value FROM items WHERE name = 'counter'")
        await asyncio.sleep(0.05)  # both read before either writes: one must lose
        await db.execute("UPDATE items SET value = :v WHERE name = 'counter'", {"v": value + 1})

    await asyncio.gather(increment(), increment())
    assert await db.fetch_val("SELECT value FROM items WHERE name = 'counter'") == 2
    assert attempts >= 3  # at least one of the two was re-run


# -- cancellation --------------------------------------------------------------------------


@servers_only
async def test_cancellation_storm_leaves_no_broken_or_leaked_connection(
    db: Database, items: str, admin: Database, backend: str
) -> None:
    sleep = "SELECT pg_sleep(:s)" if backend == "postgresql" else "SELECT SLEEP(:s)"

    @db.transaction()
    async def pair(i: int) -> None:
        await db.execute("INSERT INTO items (name, value) VALUES (:n, :v)", {"n": f"{i}-a", "v": i})
        await db.fetch_val(sleep, {"s": random.choice([0, 0.001, 0.005])})
        await db.execute("INSERT INTO items (name, value) VALUES (:n, :v)", {"n": f"{i}-b", "v": i})

    rng = random.Random(7)
    for round_ in range(6):
        tasks = [asyncio.create_task(pair(round_ * 1000 + i)) for i in range(60)]
        await asyncio.sleep(rng.uniform(0, 0.01))
        for task in tasks:
            if rng.random() < 0.5:
                asyncio.get_running_loop().call_later(rng.uniform(0, 0.02), task.cancel)
        await asyncio.gather(*tasks, return_exceptions=True)

    # every transaction committed both rows or none
    halves = await db.fetch_val(
        "SELECT count(*) FROM (SELECT value FROM items GROUP BY value HAVING count(*) <> 2) AS x"
    )
    assert halves == 0
    # no out-of-sync connection: every result goes to the query that asked for it
    results = await asyncio.gather(*(db.fetch_val("SELECT :i + 0", {"i": i}) for i in range(200)))
    assert results == list(range(200))
    stats = db.pool_stats()
    assert stats["in_use"] == 0 and stats["size"] <= stats["max_size"]
    # and nothing leaked on the server: our sessions are at most the pool's size (+ admin)
    await asyncio.sleep(0.5)  # sessions we aborted take a moment to end on the server
    if backend == "postgresql":
        server = await admin.fetch_val(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    else:
        server = await admin.fetch_val(
            "SELECT count(*) FROM information_schema.processlist "
            "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        )
    assert server <= stats["size"] + 1, (server, stats)


# -- fork ------------------------------------------------------------------------------------


def _child_main(db: Database, write: bool) -> int:
    """In a forked child: reuse the inherited Database (inside the inherited transaction
    context), then disconnect; returns the exit code."""
    asyncio.events._set_running_loop(None)  # the parent's running loop came along with fork

    async def work() -> int:
        assert await db.fetch_val("SELECT 41 + 1") == 42
        if write:
            async with db.transaction():
                await db.execute(
                    "INSERT INTO items (name) VALUES (:n)", {"n": f"child-{os.getpid()}"}
                )
        await db.disconnect()
        return 0

    try:
        return asyncio.run(work())
    except BaseException as exc:  # report, never let the child run the parent's pytest
        print("child failed:", repr(exc), flush=True)
        return 1


@servers_only
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_fork_in_the_middle_of_a_transaction(db: Database, items: str, backend: str) -> None:
    import multiprocessing

    for round_ in range(8):
        async with db.transaction():
            await db.execute("INSERT INTO items (name) VALUES (:n)", {"n": f"parent-{round_}-a"})
            if round_ % 2 == 0:
                pid = os.fork()
                if pid == 0:
                    os._exit(_child_main(db, write=True))
                _, status = await asyncio.to_thread(os.waitpid, pid, 0)
                assert os.waitstatus_to_exitcode(status) == 0
            else:
                process = multiprocessing.get_context("fork").Process(
                    target=lambda: os._exit(_child_main(db, write=True))
                )
                process.start()
                await asyncio.to_thread(process.join, 30)
                assert process.exitcode == 0
            # the parent's connection, in its open transaction, still works
            await db.execute("INSERT INTO items (name) VALUES (:n)", {"n": f"parent-{round_}-b"})
    assert await count(db, "name LIKE 'parent-%'") == 16
    assert await count(db, "name LIKE 'child-%'") == 8
    assert db.pool_stats()["in_use"] == 0


@backends("sqlite")
@pytest.mark.parametrize("memory", [False, True], ids=["file", "memory"])
async def test_sqlite_cancelled_query_is_interrupted_and_its_connection_recovered(
    db_url: str, memory: bool
) -> None:
    slow = (
        "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100000000) "
        "SELECT count(*) FROM s"
    )
    # one connection, so the next statement needs the very one that was interrupted
    async with Database("sqlite:///:memory:" if memory else db_url, max_size=1) as db:
        await db.execute("CREATE TABLE kept (n INTEGER)")
        await db.execute("INSERT INTO kept VALUES (1)")

        async def in_transaction() -> None:
            async with db.transaction():
                await db.execute("INSERT INTO kept VALUES (2)")
                await db.fetch_val(slow)

        task = asyncio.create_task(in_transaction())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started = asyncio.get_running_loop().time()
        # the committed row is there (an in-memory database survived), the other rolled back
        assert await db.fetch_val("SELECT count(*) FROM kept") == 1
        # aiosqlite alone would finish the abandoned query first (many seconds)
        assert asyncio.get_running_loop().time() - started < 1.0
        assert db.pool_stats()["recovered"] == 1
