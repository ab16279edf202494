"""Each backend's classification table, fed with exceptions the real drivers raised against
real servers (not hand-made instances)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from conftest import backends

from asyncdb import DatabaseURL
from asyncdb.backends import create_backend
from asyncdb.backends.base import Backend, ErrorKind, ErrorScope

pytestmark = pytest.mark.timeout(60)


async def raised(call: Callable[[], Awaitable[Any]]) -> BaseException:
    try:
        await call()
    except Exception as exc:
        return exc
    raise AssertionError("the driver raised nothing")


@pytest.fixture
def backend_obj(db_url: str) -> Backend:
    return create_backend(DatabaseURL(db_url), {})


@backends("postgresql")
async def test_postgres_table(backend_obj: Backend, db_url: str) -> None:
    b = backend_obj
    raw = await b.connect()
    other = await b.connect()
    try:
        await raw.execute("CREATE TEMP TABLE u (id int PRIMARY KEY)")
        await raw.execute("INSERT INTO u VALUES (1)")
        cases = [
            ("INSERT INTO u VALUES (1)", ErrorKind.INTEGRITY, "23505"),
            ("SELEC 1", ErrorKind.PROGRAMMING, "42601"),
            ("SELECT * FROM nowhere", ErrorKind.PROGRAMMING, "42P01"),
            ("SELECT 1 / 0", ErrorKind.DATA, "22012"),
        ]
        for sql, kind, state in cases:
            failure = b.classify(await raised(lambda sql=sql: raw.execute(sql)), raw)
            assert failure is not None
            assert (failure.kind, failure.sqlstate, failure.scope) == (
                kind,
                state,
                ErrorScope.SAVEPOINT,
            )
        await raw.execute("BEGIN")
        await raised(lambda: raw.execute("SELECT 1 / 0"))
        aborted = b.classify(await raised(lambda: raw.execute("SELECT 1")), raw)
        assert (
            aborted is not None
            and aborted.kind is ErrorKind.ABORTED
            and aborted.sqlstate == "25P02"
        )
        await raw.execute("ROLLBACK")
        client_side = b.classify(await raised(lambda: raw.fetchval("SELECT $1::int", "x")), raw)
        assert client_side is not None and client_side.scope is ErrorScope.STATEMENT

        await other.fetchval("SELECT pg_terminate_backend($1)", raw.get_server_pid())
        await asyncio.sleep(0.1)
        dead = b.classify(await raised(lambda: raw.execute("SELECT 1")), raw)
        assert dead is not None and dead.kind is ErrorKind.DISCONNECT
        assert dead.scope is ErrorScope.TRANSACTION
        again = b.classify(await raised(lambda: raw.execute("SELECT 1")), raw)
        assert again is not None and again.kind is ErrorKind.DISCONNECT
        assert b.classify(ValueError("not ours"), other) is None
    finally:
        b.terminate(raw)
        await b.close(other)


@backends("mysql")
async def test_mysql_table(backend_obj: Backend, driver: str) -> None:
    b = backend_obj
    raw = await b.connect()
    other = await b.connect()
    try:
        await b.command(raw, "CREATE TEMPORARY TABLE u (id int PRIMARY KEY) ENGINE=InnoDB")
        await b.command(raw, "INSERT INTO u VALUES (1)")
        cases = [
            ("INSERT INTO u VALUES (1)", ErrorKind.INTEGRITY, 1062),
            ("SELEC 1", ErrorKind.PROGRAMMING, 1064),
            ("SELECT * FROM nowhere", ErrorKind.PROGRAMMING, 1146),
        ]
        for sql, kind, code in cases:
            failure = b.classify(await raised(lambda sql=sql: b.command(raw, sql)), raw)
            assert failure is not None
            assert (failure.kind, failure.code, failure.scope) == (kind, code, ErrorScope.STATEMENT)

        # 1205 lock wait timeout: a conflict; treated as losing the transaction (safe side)
        await b.command(
            other, "CREATE TABLE IF NOT EXISTS locks (id int PRIMARY KEY) ENGINE=InnoDB"
        )
        await b.command(other, "INSERT IGNORE INTO locks VALUES (1)")
        await b.command(other, "START TRANSACTION")
        await b.command(other, "UPDATE locks SET id = 1 WHERE id = 1")
        await b.command(raw, "SET SESSION innodb_lock_wait_timeout = 1")
        await b.command(raw, "START TRANSACTION")
        timeout = b.classify(await raised(lambda: b.command(raw, "UPDATE locks SET id = 1")), raw)
        assert timeout is not None and (timeout.kind, timeout.code) == (ErrorKind.CONFLICT, 1205)
        assert timeout.scope is ErrorScope.TRANSACTION
        await b.command(raw, "ROLLBACK")
        await b.command(other, "ROLLBACK")

        session = (await b.fetch(raw, "SELECT CONNECTION_ID()", []))[1][0][0]
        await b.command(other, f"KILL {int(session)}")
        await asyncio.sleep(0.1)
        dead = b.classify(await raised(lambda: b.command(raw, "SELECT 1")), raw)
        # aiomysql finds the EOF when it reads the answer (2013, lost during query); asyncmy's
        # transport already saw it and refuses to write (2006, server has gone away).
        lost = 2006 if driver == "asyncmy" else 2013
        assert dead is not None and (dead.kind, dead.code) == (ErrorKind.DISCONNECT, lost)
        gone = b.classify(await raised(lambda: b.command(raw, "SELECT 1")), raw)
        assert gone is not None and gone.kind is ErrorKind.DISCONNECT  # "Not connected"
        assert b.classify(KeyError("not ours"), other) is None
    finally:
        await b.command(other, "DROP TABLE IF EXISTS locks")
        b.terminate(raw)
        await b.close(other)


@backends("sqlite")
async def test_sqlite_table(backend_obj: Backend) -> None:
    b = backend_obj
    raw = await b.connect()
    other = await b.connect()
    try:
        await b.command(raw, "CREATE TABLE u (id int PRIMARY KEY)")
        await b.command(raw, "INSERT INTO u VALUES (1)")
        dup = b.classify(await raised(lambda: b.command(raw, "INSERT INTO u VALUES (1)")), raw)
        assert dup is not None and dup.kind is ErrorKind.INTEGRITY
        syntax = b.classify(await raised(lambda: b.command(raw, "SELEC 1")), raw)
        assert syntax is not None and syntax.kind is ErrorKind.PROGRAMMING
        # another connection holds the write lock: busy -> a conflict
        await b.command(other, "BEGIN IMMEDIATE")
        await b.command(raw, "PRAGMA busy_timeout = 0")
        locked = b.classify(await raised(lambda: b.command(raw, "BEGIN IMMEDIATE")), raw)
        assert locked is not None and locked.kind is ErrorKind.CONFLICT
        await b.command(other, "ROLLBACK")
        await b.close(raw)
        closed = b.classify(await raised(lambda: b.command(raw, "SELECT 1")), raw)
        assert closed is not None and closed.kind is ErrorKind.DISCONNECT
    finally:
        await b.close(other)
