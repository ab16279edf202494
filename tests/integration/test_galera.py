"""A two-node MariaDB Galera cluster (scripts/replicas-mysql.sh): role detection, a write
conflict between nodes retried by transaction(retry=...), wsrep_sync_wait for
read-your-writes across nodes, and node-local GET_LOCK.

The nodes come from ASYNCDB_TEST_GALERA_URLS (comma-separated); with
ASYNCDB_REQUIRE_ALL_BACKENDS=1 (the test command) a missing cluster fails the tests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from asyncdb import ConflictError, Database, InterfaceError
from asyncdb.backends.base import ServerRole

pytestmark = pytest.mark.mysql


def galera_urls() -> list[str]:
    urls = [u for u in os.environ.get("ASYNCDB_TEST_GALERA_URLS", "").split(",") if u]
    if len(urls) < 2:
        message = "Galera nodes not configured (scripts/replicas-mysql.sh start)"
        required = os.environ.get("ASYNCDB_REQUIRE_ALL_BACKENDS") == "1"
        if required or os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return urls


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[Database, Database]]:
    """One Database per node, and a fresh one-row table (DDL reaches both nodes at once)."""
    first, second = galera_urls()[:2]
    async with Database(first) as n1, Database(second) as n2:
        await n1.execute("DROP TABLE IF EXISTS galera_counter")
        await n1.execute("CREATE TABLE galera_counter (id INTEGER PRIMARY KEY, v INTEGER)")
        await n1.execute("INSERT INTO galera_counter VALUES (1, 0)")
        assert await counter(n2) == 0  # node 2 applies DDL and writes a bit later
        yield n1, n2


async def counter(db: Database) -> int:
    """The counter as this node sees it once it has applied every earlier cluster write
    (without wsrep_sync_wait a node may answer before applying the other's commit)."""
    async with db.connection() as conn:
        await conn.execute("SET SESSION wsrep_sync_wait = 1")
        value = await conn.fetch_val("SELECT v FROM galera_counter WHERE id = 1")
    assert isinstance(value, int)
    return value


async def test_every_synced_node_is_a_primary_of_one_cluster(
    nodes: tuple[Database, Database],
) -> None:
    roles = []
    for db in nodes:
        async with db.connection() as conn:
            roles.append(await db._backend.server_role(conn.raw_connection))  # type: ignore[attr-defined]
    cluster = roles[0].cluster
    assert isinstance(cluster, str) and len(cluster) == 36  # wsrep_cluster_state_uuid
    assert roles == [ServerRole("primary", True, cluster)] * 2


async def collide(n1: Database, n2: Database, attempts: list[int]) -> None:
    """Update the row on node 1 and, on the first attempt only, let node 2 commit an update
    of the same row before node 1 commits: Galera's certification then fails node 1."""
    attempts.append(1)
    await n1.execute("UPDATE galera_counter SET v = v + 1 WHERE id = 1")
    if len(attempts) == 1:
        await n2.execute("UPDATE galera_counter SET v = v + 10 WHERE id = 1")


async def test_cross_node_conflict_fails_at_commit_as_a_conflict(
    nodes: tuple[Database, Database],
) -> None:
    n1, n2 = nodes
    attempts: list[int] = []
    with pytest.raises(ConflictError) as caught:
        async with n1.transaction():
            await collide(n1, n2, attempts)
    assert caught.value.code == 1213
    assert await counter(n1) == 10  # node 2's update only: node 1's was rolled back


async def test_cross_node_conflict_is_retried_to_success(
    nodes: tuple[Database, Database],
) -> None:
    n1, n2 = nodes
    attempts: list[int] = []

    @n1.transaction(retry=3)
    async def increment() -> None:
        await collide(n1, n2, attempts)

    await increment()
    assert len(attempts) == 2  # the first attempt lost the conflict, the retry won
    assert await counter(n1) == 11  # both updates, each once
    assert await counter(n2) == 11


async def test_wsrep_sync_wait_reads_see_writes_made_on_the_other_node(
    nodes: tuple[Database, Database],
) -> None:
    n1, _ = nodes
    url = galera_urls()[1] + "?wsrep_sync_wait=1"
    async with Database(url, max_size=1) as n2:
        for value in range(1, 51):
            await n1.execute("UPDATE galera_counter SET v = :v WHERE id = 1", {"v": value})
            assert await n2.fetch_val("SELECT v FROM galera_counter WHERE id = 1") == value
        # the setting outlives the session reset after a statement that changed the session
        await n2.execute("SET @x = 1")
        assert await n2.fetch_val("SELECT @@wsrep_sync_wait") == 1
        assert await n2.fetch_val("SELECT @x") is None  # the reset did happen


async def test_init_command_session_settings_outlive_resets() -> None:
    """The other way to ask for wsrep_sync_wait: init_command, re-run after each reset."""
    url = galera_urls()[1] + "?init_command=SET+SESSION+wsrep_sync_wait%3D1"
    async with Database(url, max_size=1) as n2:
        assert await n2.fetch_val("SELECT @@wsrep_sync_wait") == 1
        await n2.execute("SET @x = 1")
        assert await n2.fetch_val("SELECT @x") is None  # the reset did happen
        assert await n2.fetch_val("SELECT @@wsrep_sync_wait") == 1


async def test_wsrep_sync_wait_is_checked() -> None:
    with pytest.raises(InterfaceError, match="wsrep_sync_wait"):
        Database(galera_urls()[0] + "?wsrep_sync_wait=yes")


async def test_get_lock_is_node_local(nodes: tuple[Database, Database]) -> None:
    """Named locks are not replicated: both nodes grant the same lock at once, so GET_LOCK
    cannot serialize work across a Galera cluster."""
    n1, n2 = nodes
    async with n1.connection() as c1, n2.connection() as c2:
        got = await asyncio.gather(
            c1.fetch_val("SELECT GET_LOCK('asyncdb_galera', 0)"),
            c2.fetch_val("SELECT GET_LOCK('asyncdb_galera', 0)"),
        )
        assert got == [1, 1]
        await c1.fetch_val("SELECT RELEASE_LOCK('asyncdb_galera')")
        await c2.fetch_val("SELECT RELEASE_LOCK('asyncdb_galera')")
