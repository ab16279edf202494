"""The router over a two-node MariaDB Galera cluster (scripts/replicas-mysql.sh): one URL
listing both nodes is one multi-primary cluster, not a split brain. Writes go to one synced
node, reads to the other, read-your-writes holds across nodes, the writer moves when its
node leaves or desyncs and comes back. Which node served a call is read from `@@port`.

The nodes come from ASYNCDB_TEST_GALERA_URLS; with ASYNCDB_REQUIRE_ALL_BACKENDS=1 (the test
command) a missing cluster fails the tests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from routing_support import Events, Writers, fresh, one_url, port_of, run_script, until

from asyncdb import (
    Database,
    InterfaceError,
    ReadOnlyError,
)
from tests.integration.test_galera import galera_urls
from tests.integration.test_mysql_replication import replication_urls

pytestmark = [pytest.mark.mysql, pytest.mark.timeout(180)]

PORT = "SELECT @@port"
replicas_mysql = functools.partial(run_script, "replicas-mysql.sh")


class Cluster:
    def __init__(self) -> None:
        self.urls = galera_urls()[:2]
        self.n1, self.n2 = (port_of(u) for u in self.urls)
        self.url = one_url(*self.urls)

    def name(self, port: int) -> str:
        return f"127.0.0.1:{port}"


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    """Both nodes, a fresh `g(id, port, note)` table; node 1 synced and in the cluster
    again afterwards, whatever the test did to it."""
    cluster = Cluster()
    async with Database(cluster.urls[0]) as n1:
        await n1.execute("DROP TABLE IF EXISTS g")
        await n1.execute(
            "CREATE TABLE g (id INTEGER AUTO_INCREMENT PRIMARY KEY, port INTEGER, note TEXT)"
        )
    await caught_up(cluster, "g")
    try:
        yield cluster
    finally:
        await asyncio.to_thread(replicas_mysql, "galera-start", "1")
        async with Database(cluster.urls[0]) as n1:
            await n1.execute("SET GLOBAL wsrep_desync = OFF")


_until = functools.partial(until, limit=60.0)


async def caught_up(cluster: Cluster, table: str) -> None:
    """Until node 2 has applied everything node 1 committed before (a causal read), so a
    test's first routed read there finds `table` as node 1 left it."""
    async with Database(cluster.urls[1]) as n2, n2.connection() as conn:
        await conn.execute("SET SESSION wsrep_sync_wait = 1")
        await conn.fetch_val(f"SELECT COUNT(*) FROM {table}", timeout=60)


async def in_fresh_context(db: Database, sql: str) -> Any:
    """A read from a new task that inherits no position (another request)."""
    return await fresh(db.fetch_val(sql))


# -- 1. routing matrix -------------------------------------------------------------------


async def test_routing_matrix(cluster: Cluster) -> None:
    async with Database(cluster.url, replicas="auto") as db:
        w, r = cluster.n1, cluster.n2
        stats = db.pool_stats()
        assert stats["cluster"] == "galera"
        assert stats["primary"] == cluster.name(w)  # the first synced node in URL order
        hosts = stats["hosts"]
        assert hosts[cluster.name(w)]["role"] == "primary"
        assert hosts[cluster.name(r)]["role"] == "replica"
        assert hosts[cluster.name(r)]["state"] == "usable"
        ids = {hosts[cluster.name(p)]["cluster"] for p in (w, r)}
        assert len(ids) == 1 and re.fullmatch(r"[0-9a-f-]{36}", ids.pop())

        assert await db.fetch_val(PORT) == r
        assert (await db.fetch_one(PORT))[0] == r  # type: ignore[index]
        assert (await db.fetch_all(PORT))[0][0] == r
        assert [row[0] async for row in db.iterate(PORT)] == [r]
        await db.execute("INSERT INTO g (port) VALUES (@@port)")
        await db.execute_many("INSERT INTO g (port, note) VALUES (@@port, :n)", [{"n": "a"}])
        async with db.transaction():
            assert await db.fetch_val(PORT) == w
            await db.execute("INSERT INTO g (port) VALUES (@@port)")
            async with db.transaction():  # a savepoint stays on the writer
                assert await db.fetch_val(PORT) == w
        async with db.transaction(readonly=True):
            assert await db.fetch_val(PORT) == r
            async with db.transaction():
                assert await db.fetch_val(PORT) == r
        with pytest.raises(ReadOnlyError):  # a read-only session, even on a writable node
            async with db.transaction(readonly=True):
                await db.execute("INSERT INTO g (port) VALUES (0)")
        assert await db.connection(role="primary").fetch_val(PORT) == w
        assert await db.connection(role="replica").fetch_val(PORT) == r
        # a write sent to the reader by a read call fails there and runs once on the writer
        events = Events(db)
        new_id = await fresh(db.fetch_val("INSERT INTO g (port) VALUES (@@port) RETURNING id"))
        assert isinstance(new_id, int)
        assert events.reasons() == ["write_on_replica"]
        # every write landed on the writer, once
        rows = await db.connection(role="primary").fetch_all("SELECT port FROM g")
        assert [row[0] for row in rows] == [w] * 4
        assert db.pool_stats()["in_use"] == 0


# -- 2. read-your-writes on the other node --------------------------------------------------


@pytest.fixture
async def slow_table(cluster: Cluster) -> int:
    """A table without a primary key: the other node applies an UPDATE of all its rows with
    a table scan per row (tens of milliseconds), so a read there right after the commit
    misses it unless it waits."""
    rows = 1000
    async with Database(cluster.urls[0]) as n1:
        await n1.execute("DROP TABLE IF EXISTS g_slow")
        await n1.execute("CREATE TABLE g_slow (k INTEGER, v INTEGER)")
        await n1.execute_many("INSERT INTO g_slow VALUES (:k, 0)", [{"k": k} for k in range(rows)])
    await caught_up(cluster, "g_slow")
    return rows


async def test_a_task_reads_its_writes_on_the_other_node(cluster: Cluster, slow_table: int) -> None:
    async with Database(
        cluster.url, replicas="auto", read_your_writes_wait=30, max_replica_lag=30
    ) as db:
        stale_elsewhere = 0
        for value in range(1, 21):
            await db.execute("UPDATE g_slow SET v = :v", {"v": value})
            # another request, with no position: whatever node 2 has applied so far
            stale_elsewhere += await in_fresh_context(db, "SELECT MIN(v) FROM g_slow") != value
            # this task: node 2, once it has this task's write
            row = await db.fetch_one("SELECT MIN(v), MAX(v), @@port FROM g_slow")
            assert row is not None and (row[0], row[1], row[2]) == (value, value, cluster.n2)
        print(f"\nreads without a position that missed the write just made: {stale_elsewhere}/20")
        # without read-your-writes this test's reads would miss them too: they did here
        assert stale_elsewhere > 0
        assert db.pool_stats()["fallbacks"] == 0  # none had to go to the writer


async def test_read_your_writes_falls_back_to_the_writer(cluster: Cluster, slow_table: int) -> None:
    """A reader that cannot catch up within read_your_writes_wait: the writer serves."""
    async with Database(cluster.url, replicas="auto", read_your_writes_wait=0) as db:
        events = Events(db)
        await db.execute("UPDATE g_slow SET v = 1")
        row = await db.fetch_one("SELECT MIN(v), @@port FROM g_slow")
        assert row is not None and row[0] == 1
        if row[1] == cluster.n1:  # node 2 had not applied it yet (the usual case)
            assert events.reasons() == ["read_your_writes"]
        else:  # node 2 was already there
            assert (row[1], events.reasons()) == (cluster.n2, [])


# -- 3. the consistency token ----------------------------------------------------------------


async def test_consistency_token_carries_the_write_to_a_new_task(
    cluster: Cluster, slow_table: int
) -> None:
    async with Database(
        cluster.url, replicas="auto", read_your_writes_wait=30, max_replica_lag=30
    ) as db:
        assert db.consistency_token() == ""
        await db.execute("UPDATE g_slow SET v = 7")
        token = db.consistency_token()
        assert re.fullmatch(r"mysql:[0-9a-f-]{36}:\d+", token), token

        async def later_request() -> tuple[Any, ...]:
            async with db.consistent_with(token):
                row = await db.fetch_one("SELECT MIN(v), @@port FROM g_slow")
                assert row is not None
                return row[0], row[1]

        assert await fresh(later_request()) == (7, cluster.n2)
        # a GTID position (asynchronous replication) is not a Galera one
        for bad in ("mysql:0-1-5", "mysql:" + token.split(":", 2)[1], "postgresql:0/1"):
            with pytest.raises(InterfaceError, match="malformed consistency token"):
                async with db.consistent_with(bad):
                    pass
        # an older position of the same cluster is fine (covered)
        older = token.rsplit(":", 1)[0] + ":1"
        async with db.consistent_with(older):
            assert await db.fetch_val(PORT) == cluster.n2


# -- 4. the writer leaves, and comes back ------------------------------------------------------


async def test_writer_stopped_gracefully_writes_move_and_come_back(cluster: Cluster) -> None:
    db = Database(cluster.url, replicas="auto", max_size=10, replica_check_interval=0.2)
    await db.connect()
    try:
        events = Events(db)

        @db.transaction(retry=3, reconnect="backoff")
        async def insert(k: int) -> None:
            await db.execute("INSERT INTO g (id, port) VALUES (:k, @@port)", {"k": k})

        writers = Writers(insert, [[w * 1000 + i + 1 for i in range(40)] for w in range(10)], 0.02)
        await _until(lambda: len(writers.commits) >= 30)
        stopping = time.monotonic()
        await asyncio.to_thread(replicas_mysql, "galera-stop", "1")
        await writers.finish()
        pause = writers.longest_pause(since=stopping)
        rows = await db.connection(role="primary").fetch_all("SELECT id, port FROM g")
        writers.check(row[0] for row in rows)
        assert {row[1] for row in rows} == {cluster.n1, cluster.n2}  # written on both, in turn
        stats = db.pool_stats()
        assert stats["primary"] == cluster.name(cluster.n2)
        assert stats["hosts"][cluster.name(cluster.n1)]["state"] == "down"
        moved = [(d["host"], d["role"]) for e, d in events.seen if e == "role_change"]
        assert (cluster.name(cluster.n2), "primary") in moved
        print(
            f"\nwriter stopped: longest pause between two commits {pause:.3f}s, "
            f"{len(writers.unknown)} outcomes unknown, {stats['rediscoveries']} rediscoveries"
        )
        # one synced node: it serves everything
        assert await in_fresh_context(db, PORT) == cluster.n2

        await asyncio.to_thread(replicas_mysql, "galera-start", "1")
        # node 1 is synced again: after two checks in a row, writes go back to it...
        await _until(lambda: db.pool_stats()["primary"] == cluster.name(cluster.n1))
        await db.execute("INSERT INTO g (id, port) VALUES (99999, @@port)")
        assert await db.connection(role="primary").fetch_val(PORT) == cluster.n1
        # ...and node 2 serves the reads again
        await _until(
            lambda: db.pool_stats()["hosts"][cluster.name(cluster.n2)]["state"] == "usable"
        )
        assert await in_fresh_context(db, PORT) == cluster.n2
        assert await db.fetch_val("SELECT port FROM g WHERE id = 99999") == cluster.n1
    finally:
        await db.disconnect()


async def test_a_desynced_writer_is_not_used(cluster: Cluster) -> None:
    async with Database(cluster.url, replicas="auto", replica_check_interval=0.2) as db:
        events = Events(db)
        n1, n2 = cluster.name(cluster.n1), cluster.name(cluster.n2)
        await db.connection(role="primary").execute("SET GLOBAL wsrep_desync = ON")
        await _until(lambda: db.pool_stats()["primary"] == n2)
        host = db.pool_stats()["hosts"][n1]
        assert (host["role"], host["state"]) == ("replica", "lagging")  # answers, not synced
        await db.execute("INSERT INTO g (port) VALUES (@@port)")
        assert await in_fresh_context(db, PORT) == cluster.n2  # not node 1 either
        assert "no_replica" in events.reasons()
        async with Database(cluster.urls[0]) as direct:
            await direct.execute("SET GLOBAL wsrep_desync = OFF")
        await _until(lambda: db.pool_stats()["primary"] == n1)
        await db.execute("INSERT INTO g (port) VALUES (@@port)")
        rows = await db.connection(role="primary").fetch_all("SELECT port FROM g ORDER BY id")
        assert [row[0] for row in rows] == [cluster.n2, cluster.n1]
        assert ("role_change", "primary", n2) in [
            (e, d["role"], d["host"]) for e, d in events.seen if e == "role_change"
        ]


# -- 5. a cross-node conflict through the router ----------------------------------------------


async def test_cross_node_conflict_through_the_router_is_retried(cluster: Cluster) -> None:
    """Two routed Databases listing the nodes in opposite orders write on different
    nodes; the one that loses Galera's certification retries and succeeds."""
    async with (
        Database(cluster.url, replicas="auto") as db1,
        Database(one_url(*reversed(cluster.urls)), replicas="auto") as db2,
    ):
        assert db1.pool_stats()["primary"] == cluster.name(cluster.n1)
        assert db2.pool_stats()["primary"] == cluster.name(cluster.n2)
        await db1.execute("INSERT INTO g (id, port) VALUES (1, 0)")
        async with db2.connection(role="primary") as on_n2:  # node 2 has the row
            await on_n2.execute("SET SESSION wsrep_sync_wait = 1")
            assert await on_n2.fetch_val("SELECT port FROM g WHERE id = 1") == 0
        attempts: list[int] = []
        updated: list[int] = []

        @db1.transaction(retry=3)
        async def increment() -> None:
            attempts.append(await db1.fetch_val(PORT))
            await db1.execute("UPDATE g SET port = port + 1 WHERE id = 1")
            if len(attempts) == 1:  # node 2 commits an update of the same row first
                result = await fresh(
                    db2.execute_result("UPDATE g SET port = port + 10 WHERE id = 1")
                )
                updated.append(result.rowcount)

        await increment()
        assert updated == [1]
        assert attempts == [cluster.n1, cluster.n1]  # lost once at COMMIT, then won
        assert await db1.connection(role="primary").fetch_val("SELECT port FROM g") == 11


# -- 6. two primaries that are not one cluster --------------------------------------------------


async def test_a_gtid_primary_and_a_galera_node_are_a_split_brain(cluster: Cluster) -> None:
    primary, _ = replication_urls()
    url = one_url(primary, cluster.urls[0])
    async with Database(url, replicas="auto") as db:
        stats = db.pool_stats()
        assert stats["primary"] is None and stats["cluster"] is None
        roles = {name: host["role"] for name, host in stats["hosts"].items()}
        assert set(roles.values()) == {"primary"}
        with pytest.raises(ReadOnlyError, match="more than one host claims to be the primary"):
            await db.execute("CREATE TABLE IF NOT EXISTS never (x int)")


async def test_get_lock_through_the_router_warns_once(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """GET_LOCK() locks on one node only: through the router the user is told, once."""
    caplog.set_level(logging.WARNING, logger="asyncdb.routing")
    async with Database(cluster.url, replicas="auto") as db:
        async with db.connection(role="primary") as conn:
            for _ in range(2):
                assert await conn.fetch_val("SELECT GET_LOCK('asyncdb_galera', 0)") == 1
                assert await conn.fetch_val("SELECT RELEASE_LOCK('asyncdb_galera')") == 1
    warned = [r for r in caplog.records if "GET_LOCK() locks on one Galera node" in r.message]
    assert len(warned) == 1
