"""Logging and hooks: what a service's metrics and traces are built on. Passwords never show."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from conftest import backends

from asyncdb import (
    Database,
    DatabaseError,
    DatabaseURL,
    DisconnectionError,
    PoolTimeout,
    ProgrammingError,
)

pytestmark = pytest.mark.timeout(60)


async def test_query_hooks_and_connect(db_url: str) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    def record(event: str, details: dict[str, Any]) -> None:
        events.append((event, details))

    db = Database(db_url, min_size=0)
    for name in ("query_start", "query_end", "connect"):
        db.add_hook(name, record)
    async with db:
        await db.fetch_val("SELECT 1")
        with pytest.raises(ProgrammingError):
            await db.fetch_val("SELECT * FROM no_such_table")
    names = [e for e, _ in events]
    assert names == ["connect", "query_start", "query_end", "query_start", "query_end"]
    ok, failed = events[2][1], events[4][1]
    assert ok["sql"] == "SELECT 1" and ok["duration"] >= 0 and ok["error"] is None
    assert isinstance(failed["error"], ProgrammingError)
    with pytest.raises(ValueError, match="unknown hook event 'nope'"):
        db.add_hook("nope", record)


async def test_a_raising_hook_never_breaks_a_query(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: str, details: dict[str, Any]) -> None:
        raise RuntimeError("metrics backend down")

    db.add_hook("query_end", broken)
    with caplog.at_level(logging.ERROR, logger="asyncdb"):
        assert await db.fetch_val("SELECT 5") == 5
    assert "metrics backend down" in caplog.text
    db.remove_hook("query_end", broken)


@backends("postgresql", "mysql")
async def test_disconnect_and_invalidate_hooks(db: Database, backend: str) -> None:
    seen: list[str] = []
    db.add_hook("disconnect_detected", lambda e, d: seen.append(e))
    db.add_hook("invalidate", lambda e, d: seen.append(e))
    query = "SELECT pg_backend_pid()" if backend == "postgresql" else "SELECT CONNECTION_ID()"
    kill = "SELECT pg_terminate_backend(:id)" if backend == "postgresql" else "KILL :id"
    async with Database(db.url.render(hide_password=False)) as admin:
        with pytest.raises(DisconnectionError):
            async with db.transaction():
                await admin.execute(kill, {"id": await db.fetch_val(query)})
                await asyncio.sleep(0.2)
                await db.fetch_val("SELECT 1")
    assert seen == ["disconnect_detected", "invalidate"]


async def test_queries_logged_without_parameters_unless_asked(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="asyncdb.query"):
        async with Database(db_url) as db:
            await db.fetch_val("SELECT :secret_value", {"secret_value": "tops3cret"})
        async with Database(db_url, log_parameters=True) as db:
            await db.fetch_val("SELECT :visible", {"visible": "sh0wn"})
    assert "[parameters hidden]" in caplog.text
    assert "tops3cret" not in caplog.text
    assert "sh0wn" in caplog.text


@backends("postgresql", "mysql")
async def test_password_never_in_errors_reprs_or_logs(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = DatabaseURL(db_url).replace(password="Wr0ngPassw0rd")
    db = Database(wrong, min_size=0)
    assert "Wr0ngPassw0rd" not in repr(db) and "Wr0ngPassw0rd" not in str(db.url)
    with caplog.at_level(logging.DEBUG, logger="asyncdb"):
        with pytest.raises(DatabaseError) as raised:
            await db.connect()
            await db.fetch_val("SELECT 1")
    assert "Wr0ngPassw0rd" not in str(raised.value)
    assert "Wr0ngPassw0rd" not in caplog.text
    await db.disconnect()


class _Recorder:
    """Collects hook events as (event, details) pairs."""

    def __init__(self, db: Database, *events: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        for event in events:
            db.add_hook(event, self)

    def __call__(self, event: str, details: dict[str, Any]) -> None:
        self.events.append((event, details))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [details for name, details in self.events if name == event]


async def test_query_hooks_name_the_operation_and_count_rows(db: Database, items: str) -> None:
    seen = _Recorder(db, "query_start", "query_end")
    await db.execute("INSERT INTO items (name, value) VALUES (:n, 1)", {"n": "a"})
    await db.execute_many(
        "INSERT INTO items (name, value) VALUES (:n, 2)", [{"n": "b"}, {"n": "c"}]
    )
    await db.execute_result("UPDATE items SET value = 5 WHERE value = 2")
    assert len(await db.fetch_all("SELECT name FROM items")) == 3
    assert await db.fetch_one("SELECT name FROM items WHERE name = 'a'") is not None
    assert await db.fetch_val("SELECT COUNT(*) FROM items") == 3
    assert len([row async for row in db.iterate("SELECT name FROM items")]) == 3
    starts, ends = seen.of("query_start"), seen.of("query_end")
    operations = [d["operation"] for d in ends]
    assert operations == [
        "execute",
        "execute_many",
        "execute",
        "fetch_all",
        "fetch_one",
        "fetch_val",
        "iterate",
    ]
    assert [d["operation"] for d in starts] == operations
    # each query_end pairs with its query_start
    assert [d["query_id"] for d in starts] == [d["query_id"] for d in ends]
    assert len({d["query_id"] for d in ends}) == len(ends)
    rowcounts = [d["rowcount"] for d in ends]
    assert rowcounts[0] == 1  # inserted
    assert rowcounts[2] == 2  # updated
    assert rowcounts[3:] == [3, 1, 1, 3]  # rows returned (fetch_one: the one row there is)
    assert all(isinstance(d["connection_id"], int) for d in ends)
    assert all(d["transaction_depth"] == 0 and d["error"] is None for d in ends)


async def test_query_hooks_know_the_connection_and_transaction_depth(db: Database) -> None:
    seen = _Recorder(db, "query_end")
    async with db.transaction():
        await db.fetch_val("SELECT 1")
        async with db.transaction():
            await db.fetch_val("SELECT 2")
    other: list[int] = []

    async def elsewhere() -> None:
        async with db.connection() as conn:  # held: a second task gets another connection
            await conn.fetch_val("SELECT 3")
            await started.wait()
            other.append(await conn.fetch_val("SELECT 4"))

    started = asyncio.Event()
    async with db.connection() as mine:
        task = asyncio.create_task(elsewhere())
        await asyncio.sleep(0.05)
        await mine.fetch_val("SELECT 5")
        started.set()
        await task
    by_sql = {d["sql"]: d for d in seen.of("query_end")}
    assert by_sql["SELECT 1"]["transaction_depth"] == 1
    assert by_sql["SELECT 2"]["transaction_depth"] == 2
    commands = [d for d in seen.of("query_end") if d["operation"] == "command"]
    assert len(commands) >= 4  # BEGIN, SAVEPOINT, RELEASE, COMMIT
    assert len({d["connection_id"] for d in commands}) == 1  # one connection per transaction
    assert by_sql["SELECT 1"]["connection_id"] == commands[0]["connection_id"]
    assert by_sql["SELECT 3"]["connection_id"] == by_sql["SELECT 4"]["connection_id"]
    assert by_sql["SELECT 3"]["connection_id"] != by_sql["SELECT 5"]["connection_id"]


async def test_iterate_fires_the_query_hooks_and_is_logged(
    db: Database, items: str, caplog: pytest.LogCaptureFixture
) -> None:
    await db.execute_many(
        "INSERT INTO items (name, value) VALUES (:n, :v)",
        [{"n": f"n{i}", "v": i} for i in range(1500)],  # two batches
    )
    seen = _Recorder(db, "query_start", "query_end")
    sql = "SELECT name FROM items WHERE value >= :low"
    with caplog.at_level(logging.DEBUG, logger="asyncdb.query"):
        count = 0
        async for _row in db.iterate(sql, {"low": 0}):
            if count == 0:
                assert len(seen.of("query_start")) == 1 and seen.of("query_end") == []
            count += 1
    assert count == 1500
    (start,), (end,) = seen.of("query_start"), seen.of("query_end")
    assert start["operation"] == end["operation"] == "iterate"
    assert end["rowcount"] == 1500 and end["error"] is None and end["duration"] > 0
    assert "SELECT name FROM items WHERE value >=" in caplog.text
    assert "[parameters hidden]" in caplog.text

    # left early and closed: the end comes with the close, and is no error
    rows = db.iterate("SELECT name FROM items")
    async for _row in rows:
        break
    assert len(seen.of("query_end")) == 1
    await rows.aclose()  # type: ignore[attr-defined]
    early = seen.of("query_end")[1]
    assert early["operation"] == "iterate" and early["error"] is None
    assert early["rowcount"] == 1000  # one batch fetched

    with pytest.raises(ProgrammingError):
        async for _row in db.iterate("SELECT * FROM no_such_table"):
            pass
    failed = seen.of("query_end")[2]
    assert isinstance(failed["error"], ProgrammingError) and failed["rowcount"] is None


async def test_acquire_hook_reports_the_wait_for_a_connection(db_url: str) -> None:
    db = Database(db_url, min_size=0, max_size=1, acquire_timeout=0.3)
    seen = _Recorder(db, "acquire", "connect")
    async with db:
        await db.fetch_val("SELECT 1")
        (first,) = seen.of("acquire")
        assert first["wait"] >= 0 and first["error"] is None
        assert isinstance(first["connection_id"], int)
        (connected,) = seen.of("connect")  # opened for that first checkout, inside its wait
        assert connected["connection_id"] == first["connection_id"]
        assert 0 < connected["duration"] <= first["wait"]
        async with db.connection() as held:
            await held.fetch_val("SELECT 1")
            with pytest.raises(PoolTimeout):
                await asyncio.create_task(db.fetch_val("SELECT 2"))
    timed_out = seen.of("acquire")[-1]
    assert isinstance(timed_out["error"], PoolTimeout)
    assert timed_out["wait"] >= 0.25 and timed_out["connection_id"] is None


async def test_transaction_hooks_report_depth_and_outcome(db: Database) -> None:
    seen = _Recorder(db, "transaction_start", "transaction_end")
    async with db.transaction():
        async with db.transaction():
            pass
    with pytest.raises(RuntimeError):
        async with db.transaction():
            raise RuntimeError("boom")
    tx = await db.transaction().start()
    await tx.rollback()
    starts, ends = seen.of("transaction_start"), seen.of("transaction_end")
    assert len(starts) == len(ends) == 4
    assert [(d["depth"], d["outcome"]) for d in ends] == [
        (2, "commit"),
        (1, "commit"),
        (1, "rollback"),
        (1, "rollback"),
    ]
    assert isinstance(ends[2]["error"], RuntimeError)
    assert ends[3]["error"] is None
    assert all(d["attempt"] == 1 and d["duration"] >= 0 for d in ends)
    assert ends[0]["connection_id"] == ends[1]["connection_id"] is not None
    assert {d["transaction_id"] for d in starts} == {d["transaction_id"] for d in ends}


async def test_a_hook_that_removes_itself_does_not_hide_the_next_one(db: Database) -> None:
    calls: list[str] = []

    def once(event: str, details: dict[str, Any]) -> None:
        calls.append("once")
        db.remove_hook("query_end", once)

    db.add_hook("query_end", once)
    db.add_hook("query_end", lambda e, d: calls.append("always"))
    await db.fetch_val("SELECT 1")
    await db.fetch_val("SELECT 1")
    assert calls == ["once", "always", "always"]
