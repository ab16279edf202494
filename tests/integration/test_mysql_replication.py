"""MariaDB primary + GTID replica (scripts/replicas-mysql.sh): role, positions, lag,
read-only sessions and demotion, on real servers.

The servers come from ASYNCDB_TEST_MYSQL_PRIMARY_URL / ASYNCDB_TEST_MYSQL_REPLICA_URL; with
ASYNCDB_REQUIRE_ALL_BACKENDS=1 (the test command) missing ones fail the tests.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncdb import (
    CommitOutcomeUnknownError,
    Database,
    DisconnectionError,
    ReadOnlyError,
)
from asyncdb.backends.base import ServerRole
from asyncdb.backends.mysql import MySQLBackend
from tests.conftest import backends

pytestmark = pytest.mark.mysql

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "replicas-mysql.sh"
APP_USER = "asyncdb_app"  # no READ_ONLY ADMIN: read_only=ON binds it


def replication_urls() -> tuple[str, str]:
    primary = os.environ.get("ASYNCDB_TEST_MYSQL_PRIMARY_URL")
    replica = os.environ.get("ASYNCDB_TEST_MYSQL_REPLICA_URL")
    if not (primary and replica):
        message = "MariaDB replication servers not configured (scripts/replicas-mysql.sh start)"
        required = os.environ.get("ASYNCDB_REQUIRE_ALL_BACKENDS") == "1"
        if required or os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return primary, replica


def run_script(command: str) -> None:
    """A sub-command of scripts/replicas-mysql.sh on the running servers."""
    subprocess.run(["bash", str(SCRIPT), command], check=True, timeout=60)


@pytest.fixture
async def primary() -> AsyncIterator[Database]:
    async with Database(replication_urls()[0]) as db:
        await db.execute("DROP TABLE IF EXISTS repl_items")
        await db.execute("CREATE TABLE repl_items (id INTEGER PRIMARY KEY, name VARCHAR(50))")
        yield db


@pytest.fixture
async def replica(primary: Database) -> AsyncIterator[Database]:
    async with Database(replication_urls()[1]) as db:
        await caught_up(primary, db)  # the table exists on the replica too
        yield db


@pytest.fixture
def demoted() -> Iterator[None]:
    """The primary made read-only (a switchover without restart); undone afterwards."""
    run_script("demote")
    try:
        yield
    finally:
        run_script("undemote")


@pytest.fixture
def replica_sql_stopped() -> Iterator[None]:
    run_script("stop-replica-sql")
    try:
        yield
    finally:
        run_script("start-replica-sql")


@pytest.fixture
async def app(primary: Database) -> AsyncIterator[Database]:
    """The primary as an ordinary login (rights on the test database only)."""
    await primary.execute(f"CREATE USER IF NOT EXISTS {APP_USER}@'%' IDENTIFIED BY 'app'")
    await primary.execute(f"GRANT ALL ON asyncdb_test.* TO {APP_USER}@'%'")
    url = primary.url.replace(username=APP_USER, password="app")
    async with Database(url) as db:
        yield db


def backend(db: Database) -> MySQLBackend:
    return db._backend  # type: ignore[return-value]


async def on_raw(db: Database, method: str, *args: Any) -> Any:
    """Call a backend replication method on one of `db`'s raw connections."""
    async with db.connection() as conn:
        return await getattr(backend(db), method)(conn.raw_connection, *args)


async def caught_up(primary: Database, replica: Database) -> str:
    position = await on_raw(primary, "write_position")
    assert await on_raw(replica, "wait_for_position", position, 30.0)
    return str(position)


async def names(db: Database) -> list[str]:
    return [r[0] for r in await db.fetch_all("SELECT name FROM repl_items ORDER BY id")]


async def test_server_roles(primary: Database, replica: Database) -> None:
    assert await on_raw(primary, "server_role") == ServerRole("primary", True, None)
    assert await on_raw(replica, "server_role") == ServerRole("replica", True, None)
    assert await on_raw(primary, "replica_lag") is None
    assert await on_raw(primary, "replay_position") is None
    lag = await on_raw(replica, "replica_lag")
    assert isinstance(lag, float) and lag >= 0


async def test_role_seen_by_a_login_that_may_not_see_replication(
    primary: Database, replica: Database, app: Database
) -> None:
    """Without SLAVE MONITOR, SHOW SLAVE STATUS is refused: read_only decides alone."""
    await caught_up(primary, replica)  # the login exists on the replica too
    url = replica.url.replace(username=APP_USER, password="app")
    async with Database(url) as app_on_replica:
        assert await on_raw(app_on_replica, "server_role") == ServerRole("replica", True, None)
        assert await on_raw(app_on_replica, "replica_lag") is None


async def test_write_position_is_covered_once_replayed(
    primary: Database, replica: Database
) -> None:
    async with primary.connection() as conn:
        await conn.execute("INSERT INTO repl_items VALUES (1, 'one')")
        before = await backend(primary).write_position(conn.raw_connection)
        await conn.execute("INSERT INTO repl_items VALUES (2, 'two')")
        # the session's own last GTID: the one of the second insert
        wanted = await backend(primary).write_position(conn.raw_connection)
    mysql = backend(replica)
    assert mysql.position_covers(wanted, before) and not mysql.position_covers(before, wanted)
    assert await on_raw(replica, "wait_for_position", wanted, 30.0) is True
    assert mysql.position_covers(await on_raw(replica, "replay_position"), wanted)
    assert await names(replica) == ["one", "two"]


async def test_stopped_replica_does_not_cover_new_writes(
    primary: Database, replica: Database, replica_sql_stopped: None
) -> None:
    async with primary.connection() as conn:
        await conn.execute("INSERT INTO repl_items VALUES (1, 'unseen')")
        wanted = await backend(primary).write_position(conn.raw_connection)
    replayed = await on_raw(replica, "replay_position")
    assert not backend(replica).position_covers(replayed, wanted)
    assert await on_raw(replica, "wait_for_position", wanted, 0.5) is False
    assert await names(replica) == []
    assert await on_raw(replica, "server_role") == ServerRole("replica", False, None)
    assert await on_raw(replica, "replica_lag") is None  # NULL while the SQL thread stops


async def test_readonly_session_binds_even_a_privileged_login(
    primary: Database, demoted: None
) -> None:
    # The test login has every privilege: read_only=ON does not stop it...
    await primary.execute("INSERT INTO repl_items VALUES (1, 'privileged')")
    async with primary.connection() as conn:
        for sql in backend(primary).readonly_session_sql():
            await conn.execute(sql)
        # ...a read-only session does, before anything is written
        with pytest.raises(ReadOnlyError) as caught:
            await conn.execute("INSERT INTO repl_items VALUES (2, 'refused')")
        assert caught.value.code == 1792
        assert isinstance(caught.value, DisconnectionError)
        assert await conn.fetch_val("SELECT COUNT(*) FROM repl_items") == 1  # still usable
    assert await names(primary) == ["privileged"]


async def test_demoted_primary_refuses_writes_on_a_held_connection(
    primary: Database, app: Database
) -> None:
    async with app.connection() as conn:
        await conn.execute("INSERT INTO repl_items VALUES (1, 'before')")
        run_script("demote")
        try:
            with pytest.raises(ReadOnlyError) as caught:
                await conn.execute("INSERT INTO repl_items VALUES (2, 'after')")
            assert caught.value.code == 1290
            assert await conn.fetch_val("SELECT COUNT(*) FROM repl_items") == 1
        finally:
            run_script("undemote")
    assert await names(primary) == ["before"]
    assert await on_raw(primary, "server_role") == ServerRole("primary", True, None)


async def test_demotion_before_commit_is_a_refusal_not_an_unknown_outcome(
    primary: Database, app: Database
) -> None:
    """COMMIT refused by a read-only server committed nothing: ReadOnlyError (the work may
    be run elsewhere), never CommitOutcomeUnknownError."""
    try:
        with pytest.raises(ReadOnlyError) as caught:
            async with app.transaction():
                await app.execute("INSERT INTO repl_items VALUES (1, 'lost')")
                run_script("demote")
        assert not isinstance(caught.value, CommitOutcomeUnknownError)
        assert caught.value.code == 1290
        assert await on_raw(primary, "server_role") == ServerRole("replica", False, None)
    finally:
        run_script("undemote")
    assert await names(primary) == []
    await app.execute("INSERT INTO repl_items VALUES (2, 'fine')")  # the pool still works
    assert await names(primary) == ["fine"]


@backends("postgresql", "mysql")
async def test_engine_is_read_at_connect(db: Database, backend: str) -> None:
    assert db._backend.engine == {"postgresql": "postgresql", "mysql": "mariadb"}[backend]  # type: ignore[attr-defined]
