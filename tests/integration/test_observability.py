"""Logging and hooks: what a service's metrics and traces are built on. Passwords never show."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from conftest import backends

from asyncdb import Database, DatabaseError, DatabaseURL, DisconnectionError, ProgrammingError

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
