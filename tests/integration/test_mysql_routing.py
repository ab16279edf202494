"""The primary/replica router end to end on a MariaDB primary and its GTID replica
(scripts/replicas-mysql.sh), through both MySQL drivers: routing, read-your-writes with
GTIDs, lag, demotion and failover by promotion. Which server served a call is read from
`SELECT @@port`.

The servers come from ASYNCDB_TEST_MYSQL_PRIMARY_URL / ASYNCDB_TEST_MYSQL_REPLICA_URL; with
ASYNCDB_REQUIRE_ALL_BACKENDS=1 (the test command) missing ones fail the tests.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from conftest import _required, driver_params, with_driver
from routing_support import Events, Writers, fresh, one_url, port_of, run_script, until

from asyncdb import (
    Database,
    DisconnectionError,
    InterfaceError,
    ReadOnlyError,
)

pytestmark = [pytest.mark.mysql, pytest.mark.timeout(180)]

PORT = "SELECT @@port"
# An ordinary login: rights on the test database only, so no READ_ONLY ADMIN (nor SUPER)
# and read_only=ON binds it, as it binds an application's login.
APP_USER, APP_PASSWORD = "asyncdb_app", "app"


replicas_mysql = functools.partial(run_script, "replicas-mysql.sh")


class Pair:
    """The primary and replica URLs (through one driver) and their ports."""

    def __init__(self, driver: str) -> None:
        primary = os.environ.get("ASYNCDB_TEST_MYSQL_PRIMARY_URL")
        replica = os.environ.get("ASYNCDB_TEST_MYSQL_REPLICA_URL")
        if not (primary and replica):
            message = "MariaDB replication servers not configured (scripts/replicas-mysql.sh)"
            if _required():
                pytest.fail(message)
            pytest.skip(message)
        self.driver = driver
        self.primary_url = with_driver(primary, driver)
        self.replica_url = with_driver(replica, driver)
        self.primary = port_of(primary)
        self.replica = port_of(replica)

    def url(self, *, replica_first: bool = True, app: bool = False) -> str:
        """One URL listing both hosts (the replica first unless told otherwise)."""
        urls = [self.replica_url, self.primary_url]
        url = one_url(*(urls if replica_first else urls[::-1]))
        if app:
            url = url.replace("//asyncdb:asyncdb@", f"//{APP_USER}:{APP_PASSWORD}@")
        return url

    def host(self, port: int) -> str:
        return f"127.0.0.1:{port}"


@pytest.fixture(params=driver_params("mysql"))
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    pair = Pair(request.param)
    try:
        yield pair
    finally:  # whatever a failed test left behind
        replicas_mysql("start-replica-sql")
        replicas_mysql("undemote")


async def wait_for_replica(pair: Pair, position: str | None = None) -> None:
    """Until the replica has applied `position` (default: all the primary has logged)."""
    async with Database(pair.primary_url) as primary, Database(pair.replica_url) as replica:
        if position is None:
            position = await primary.fetch_val("SELECT @@gtid_binlog_pos")
        done = await replica.fetch_val(
            "SELECT MASTER_GTID_WAIT(:p, 60)", {"p": position}, timeout=90
        )
        assert done == 0, f"the replica did not apply {position}"


@pytest.fixture
async def table(pair: Pair) -> str:
    """A fresh `r(id, port, note)` table and the application login, on both servers."""
    async with Database(pair.primary_url) as db:
        await db.execute("DROP TABLE IF EXISTS r")
        await db.execute(
            "CREATE TABLE r (id INTEGER AUTO_INCREMENT PRIMARY KEY, port INTEGER, note TEXT)"
        )
        await db.execute(f"CREATE USER IF NOT EXISTS {APP_USER}@'%' IDENTIFIED BY '{APP_PASSWORD}'")
        await db.execute(f"GRANT ALL ON asyncdb_test.* TO {APP_USER}@'%'")
    await wait_for_replica(pair)
    return "r"


_until = functools.partial(until, limit=30.0)


# -- 1. routing matrix -------------------------------------------------------------------


async def test_routing_matrix(pair: Pair, table: str) -> None:
    p, s = pair.primary, pair.replica
    async with Database(pair.url(), replicas="auto") as db:
        assert await db.fetch_val(PORT) == s
        assert (await db.fetch_one(PORT))[0] == s  # type: ignore[index]
        assert (await db.fetch_all(PORT))[0][0] == s
        assert [row[0] async for row in db.iterate(PORT)] == [s]
        await db.execute("INSERT INTO r (port) VALUES (@@port)")
        await db.execute_many("INSERT INTO r (port, note) VALUES (@@port, :n)", [{"n": "a"}])
        result = await db.execute_result("UPDATE r SET note = 'u' WHERE port = @@port")
        assert result.rowcount == 2
        async with db.transaction():
            assert await db.fetch_val(PORT) == p
            async with db.transaction():  # a savepoint stays on the primary
                assert await db.fetch_val(PORT) == p
        async with db.transaction(readonly=True):
            assert await db.fetch_val(PORT) == s
            async with db.transaction():  # its savepoints stay on the replica
                assert await db.fetch_val(PORT) == s
        with pytest.raises(ReadOnlyError) as refused:
            async with db.transaction(readonly=True):  # not re-run: in a transaction
                await db.execute("INSERT INTO r (port) VALUES (0)")
        assert refused.value.code == 1792

        @db.transaction()
        async def in_decorated() -> int:
            return int(await db.fetch_val(PORT))

        assert await in_decorated() == p
        assert await db.connection(role="primary").fetch_val(PORT) == p
        assert await db.connection(role="replica").fetch_val(PORT) == s
        async with db.connection() as held:  # a held primary connection keeps the reads
            assert await db.fetch_val(PORT) == p
            assert await held.fetch_val(PORT) == p
        assert await db.fetch_val(PORT) == s
        with pytest.raises(InterfaceError, match="role"):
            db.connection(role="standby")
        primary = db.connection(role="primary")
        assert await primary.fetch_val("SELECT count(*) FROM r WHERE port = :p", {"p": p}) == 2
        assert await primary.fetch_val("SELECT count(*) FROM r") == 2
        stats = db.pool_stats()
        assert stats["primary"] == pair.host(p)
        assert stats["hosts"][pair.host(s)]["role"] == "replica"
        assert stats["hosts"][pair.host(s)]["state"] == "usable"
        assert stats["in_use"] == 0 and stats["fallbacks"] == 0
        assert db.consistency_token().startswith("mysql:0-1-")

    # the replica named in replicas=[...]; the URL then lists the primary alone
    async with Database(pair.primary_url, replicas=[pair.replica_url]) as db:
        assert await db.fetch_val(PORT) == s
        assert await db.connection(role="primary").fetch_val(PORT) == p

    # force_rollback: no routing, everything on the primary, rolled back at the end
    async with Database(pair.url(), replicas="auto", force_rollback=True) as db:
        assert await db.fetch_val(PORT) == p
        await db.execute("INSERT INTO r (port) VALUES (1)")
        async with db.transaction(readonly=True):
            assert await db.fetch_val(PORT) == p
    async with Database(pair.primary_url) as plain:
        assert await plain.fetch_val("SELECT count(*) FROM r WHERE port = 1") == 0


# -- 2. a write sent to a replica ----------------------------------------------------------


async def test_insert_returning_outside_a_transaction_runs_once_on_the_primary(
    pair: Pair, table: str
) -> None:
    async with Database(pair.url(), replicas="auto") as db:
        events = Events(db)
        # a read as far as the router can tell: sent to the replica, refused there (the
        # session is read-only even for this privileged login), run again on the primary
        new_id = await db.fetch_val("INSERT INTO r (port) VALUES (@@port) RETURNING id")
        assert new_id == 1
        assert events.reasons() == ["write_on_replica"]
        assert db.pool_stats()["fallbacks"] == 1
        # this task now stays on the primary; another task still reads from the replica
        assert await db.fetch_val(PORT) == pair.primary
        assert await fresh(db.fetch_val(PORT)) == pair.replica
        rows = await db.connection(role="primary").fetch_all("SELECT id, port FROM r")
        assert [(row["id"], row["port"]) for row in rows] == [(1, pair.primary)]
    await wait_for_replica(pair)
    async with Database(pair.replica_url) as replica:
        assert await replica.fetch_val("SELECT count(*) FROM r") == 1


# -- 3. read-your-writes -------------------------------------------------------------------


async def test_read_your_writes_with_the_replica_sql_thread_stopped(pair: Pair, table: str) -> None:
    async with Database(
        pair.url(), replicas="auto", max_replica_lag=60, read_your_writes_wait=0.3
    ) as db:
        events = Events(db)
        wrote = asyncio.Event()

        async def other() -> tuple[int, int]:
            # created before the write: its context has no position of it
            await wrote.wait()
            return await db.fetch_val("SELECT count(*) FROM r"), await db.fetch_val(PORT)

        other_task = asyncio.create_task(other())
        assert db.consistency_token() == ""
        replicas_mysql("stop-replica-sql")
        await db.execute("INSERT INTO r (note) VALUES ('mine')")
        wrote.set()
        assert await db.fetch_val("SELECT note FROM r") == "mine"  # own write, from the primary
        assert events.reasons() == ["read_your_writes"]
        assert await other_task == (0, pair.replica)  # the other task: old data, replica
        assert db.pool_stats()["hosts"][pair.host(pair.replica)]["state"] == "usable"

        token = db.consistency_token()
        assert token.startswith("mysql:0-1-")

        async def later_request() -> tuple[Any, int]:
            async with db.consistent_with(token):
                return await db.fetch_val("SELECT note FROM r"), await db.fetch_val(PORT)

        assert await fresh(later_request()) == ("mine", pair.primary)
        assert await fresh(db.fetch_val(PORT)) == pair.replica
        # once the replica has applied that GTID, the same token reads from the replica
        replicas_mysql("start-replica-sql")
        await wait_for_replica(pair, token.partition(":")[2])
        assert await fresh(later_request()) == ("mine", pair.replica)
        # the writer itself, too; a child task inherits its position
        assert await db.fetch_val(PORT) == pair.replica
        assert await asyncio.create_task(db.fetch_val("SELECT note FROM r")) == "mine"
        for bad in ("garbage", "mysql:0-1", "mysql:x-1-2", "postgresql:0/1", "mysql:"):
            with pytest.raises(InterfaceError, match="malformed consistency token"):
                async with db.consistent_with(bad):
                    pass
        async with db.consistent_with(""):  # no writes to wait for
            assert await db.fetch_val(PORT) == pair.replica


# -- 4. lag ----------------------------------------------------------------------------------


async def test_lagging_replica_is_dropped_and_taken_back(pair: Pair, table: str) -> None:
    async with Database(
        pair.url(), replicas="auto", max_replica_lag=0.5, replica_check_interval=0.2
    ) as db:
        events = Events(db)
        replica = pair.host(pair.replica)
        replicas_mysql("stop-replica-sql")
        # stopped, but nothing written meanwhile: not behind, still used
        await asyncio.sleep(1.5)  # several monitor rounds
        assert db.pool_stats()["hosts"][replica]["state"] == "usable"
        assert events.states() == []
        assert await fresh(db.fetch_val(PORT)) == pair.replica
        await db.execute("INSERT INTO r (note) VALUES ('x')")
        await _until(lambda: "lagging" in events.states())
        host = db.pool_stats()["hosts"][replica]
        assert host["state"] == "lagging" and host["lag"] > 0.5
        dropped = [d for e, d in events.seen if e == "replica_state" and d["state"] == "lagging"]
        assert dropped[0]["host"] == replica and dropped[0]["lag"] > 0.5
        assert await fresh(db.fetch_val(PORT)) == pair.primary
        assert "no_replica" in events.reasons()
        replicas_mysql("start-replica-sql")
        await _until(lambda: events.states()[-1] == "usable")
        assert db.pool_stats()["hosts"][replica]["lag"] <= 0.5
        assert await fresh(db.fetch_val(PORT)) == pair.replica


# -- 5. demotion -----------------------------------------------------------------------------


async def test_demoted_primary_refuses_writes_until_undemoted(pair: Pair, table: str) -> None:
    # replica_check_interval: the monitor does not look again; the refused write must notice
    async with Database(pair.url(app=True), replicas="auto", replica_check_interval=3600) as db:
        events = Events(db)
        await db.execute("INSERT INTO r (note) VALUES ('before')")
        replicas_mysql("demote")
        try:
            with pytest.raises(ReadOnlyError) as refused:
                await db.execute("INSERT INTO r (note) VALUES ('refused')")
            assert refused.value.code == 1290
            await _until(
                lambda: db.pool_stats()["hosts"][pair.host(pair.primary)]["role"] == "replica"
            )
            assert db.pool_stats()["primary"] is None
            assert db.pool_stats()["rediscoveries"] >= 1
            # fail_fast: a write says at once that there is no primary
            with pytest.raises(DisconnectionError, match="no primary among"):
                await db.execute("INSERT INTO r (note) VALUES ('no primary')")
            assert await fresh(db.fetch_val(PORT)) == pair.replica  # reads go on

            # backoff: a write waits for a primary to come back
            @db.transaction(retry=5, reconnect="backoff")
            async def write() -> int:
                await db.execute("INSERT INTO r (note) VALUES ('waited')")
                return int(await db.fetch_val(PORT))

            waiting = asyncio.create_task(write())
            await asyncio.sleep(1.5)
            assert not waiting.done()
        finally:
            replicas_mysql("undemote")
        assert await asyncio.wait_for(waiting, 60) == pair.primary
        assert db.pool_stats()["primary"] == pair.host(pair.primary)
        roles = [(d["host"], d["role"]) for e, d in events.seen if e == "role_change"]
        assert roles == [(pair.host(pair.primary), "replica"), (pair.host(pair.primary), "primary")]
        await db.execute("INSERT INTO r (note) VALUES ('after')")
        notes = await db.connection(role="primary").fetch_all("SELECT note FROM r ORDER BY id")
        assert [row[0] for row in notes] == ["before", "waited", "after"]


# -- 6. failover by promotion ------------------------------------------------------------


@pytest.fixture
async def failover_pair(pair: Pair) -> AsyncIterator[Pair]:
    """The pair, made anew afterwards (original topology): these tests promote the replica."""
    try:
        yield pair
    finally:
        await asyncio.to_thread(replicas_mysql, "reset")


async def test_failover_by_promotion_under_concurrent_transactions(
    failover_pair: Pair, table: str
) -> None:
    pair = failover_pair
    async with Database(pair.primary_url) as plain:
        await plain.execute("DROP TABLE IF EXISTS f")
        await plain.execute(
            "CREATE TABLE f (id INTEGER AUTO_INCREMENT PRIMARY KEY, w INTEGER, i INTEGER, "
            "port INTEGER)"
        )
    await wait_for_replica(pair)
    db = Database(pair.url(replica_first=False, app=True), replicas="auto", max_size=20)
    await db.connect()
    events = Events(db)

    @db.transaction(retry=5, reconnect="backoff")
    async def insert(key: tuple[int, int]) -> None:
        w, i = key
        await db.execute("INSERT INTO f (w, i, port) VALUES (:w, :i, @@port)", {"w": w, "i": i})

    writers = Writers(insert, [[(w, i) for i in range(6)] for w in range(30)], gap=0.05)
    try:
        await _until(lambda: len(writers.commits) >= 30, limit=60)
        promoting = time.monotonic()
        await asyncio.to_thread(replicas_mysql, "promote")
        await writers.finish()
        print(  # measured, not asserted
            "\nMariaDB promotion: longest pause between two commits "
            f"{writers.longest_pause(since=promoting):.3f}s; {len(writers.commits)} commits, "
            f"{len(writers.unknown)} outcomes unknown, "
            f"{db.pool_stats()['rediscoveries']} rediscoveries"
        )
        rows = await db.connection(role="primary").fetch_all("SELECT w, i, port FROM f")
        writers.check((row["w"], row["i"]) for row in rows)
        assert db.pool_stats()["primary"] == pair.host(pair.replica)
        ports = Counter(row["port"] for row in rows)
        print(f"rows written on the old primary / the promoted replica: {dict(ports)}")
        assert set(ports) == {pair.primary, pair.replica}  # before and after the promotion
        assert any(
            e == "role_change" and d["role"] == "primary" and d["host"] == pair.host(pair.replica)
            for e, d in events.seen
        )

        # the old primary follows the new one: used again as a replica, with every row
        await asyncio.to_thread(replicas_mysql, "rejoin")
        old = pair.host(pair.primary)
        await _until(
            lambda: (
                db.pool_stats()["hosts"][old]["role"] == "replica"
                and db.pool_stats()["hosts"][old]["state"] == "usable"
            )
        )
        await db.execute("INSERT INTO f (w, i, port) VALUES (-1, 0, @@port)")
        assert await db.fetch_val("SELECT count(*) FROM f") == len(rows) + 1
        assert await fresh(db.fetch_val(PORT)) == pair.primary  # the old primary, a replica now
    finally:
        writers.cancel()
        await db.disconnect()


async def test_connection_held_on_the_replica_across_a_promotion(
    failover_pair: Pair, table: str
) -> None:
    """MariaDB does not tell a connection its server was promoted (PostgreSQL reports
    in_hot_standby): the held session stays read-only, and the monitor finds the new roles."""
    pair = failover_pair
    async with Database(pair.url(app=True), replicas="auto", replica_check_interval=0.2) as db:
        events = Events(db)
        async with db.connection(role="replica") as held:
            assert await held.fetch_val(PORT) == pair.replica
            await asyncio.to_thread(replicas_mysql, "promote")
            await _until(lambda: db.pool_stats()["primary"] == pair.host(pair.replica))
            with pytest.raises(ReadOnlyError) as refused:  # refused, never run
                await held.execute("CREATE TABLE never (x int)")
            assert refused.value.code == 1792
            assert await held.fetch_val(PORT) == pair.replica  # still usable for reads
        assert (
            "role_change",
            {
                "backend": "mysql",
                "host": pair.host(pair.replica),
                "role": "primary",
                "previous": "replica",
            },
        ) in events.seen
        # writes now go to the promoted server; the demoted one, fed by nothing, is not
        # read from (it is not known to have the writes): reads go to the primary
        await db.execute("CREATE TABLE IF NOT EXISTS g (x int)")
        assert await db.connection(role="primary").fetch_val(PORT) == pair.replica
        assert await fresh(db.fetch_val(PORT)) == pair.replica
        assert "no_replica" in events.reasons()
        old = db.pool_stats()["hosts"][pair.host(pair.primary)]
        assert old["role"] == "replica" and old["state"] != "usable"
        async with Database(pair.replica_url) as plain:  # the promoted one
            assert (
                await plain.fetch_val(
                    "SELECT count(*) FROM information_schema.tables WHERE table_name = 'never'"
                )
                == 0
            )
