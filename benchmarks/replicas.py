"""Routing to a replica: what it costs, on one machine.

    eval "$(bash scripts/replicas.sh start)"        # a PostgreSQL primary + standby on loopback
    eval "$(bash scripts/replicas-mysql.sh start)"  # MariaDB primary + GTID replica, Galera pair
    python -m benchmarks.replicas                    # 200 readers, 3 rounds, every cluster set up
    python -m benchmarks.replicas --cluster galera --readers 50 --reads 20 --rounds 5

Both servers run on the same machine, so routing cannot make reads faster here: the point is
the overhead of asyncdb's routing and of its read-your-writes check, next to the same work on
the primary alone. Workloads, interleaved round by round:

1. 200 concurrent readers, each `fetch_one` by key in a loop: throughput (reads/s) on the
   primary alone (`Database(primary)`), on the other server alone (`Database(standby)`: the
   server the routed reads go to, without routing), and routed (`Database(primary,
   replicas=[standby])`, or for Galera both nodes with `replicas="auto"`: the reads go to
   the other server). Routed over the other server alone is what routing itself costs.
2. A write, then a read of it in the same task (read-your-writes): time per pair on the
   primary alone, and routed (the read waits for the standby to replay the write, up to
   `read_your_writes_wait`, or falls back to the primary: the fallbacks are counted).

Clusters (`--cluster`, default: each one whose URLs are set): `postgresql`
(ASYNCDB_TEST_PG_PRIMARY_URL, ASYNCDB_TEST_PG_STANDBY_URL), `mariadb` (GTID replication:
ASYNCDB_TEST_MYSQL_PRIMARY_URL, ASYNCDB_TEST_MYSQL_REPLICA_URL), `galera`
(ASYNCDB_TEST_GALERA_URLS, comma-separated). The markdown tables are printed and written to
benchmarks/results/replicas.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

from asyncdb import Database

RESULTS = Path(__file__).parent / "results"
ONE = "SELECT id, v FROM bench_replica WHERE id = :id"


class Cluster:
    """Where one kind of cluster is, and the SQL that differs between PostgreSQL and MariaDB."""

    def __init__(self, name: str, primary: str, other: str, routed_url: str, routed: Any) -> None:
        self.name, self.primary, self.other = name, primary, other
        self.routed_url, self.routed = routed_url, routed  # Database(routed_url, replicas=...)
        postgres = primary.startswith("postgresql")
        self.serial = "serial" if postgres else "INTEGER AUTO_INCREMENT"
        self.insert = "INSERT INTO bench_replica (v) VALUES (:v)" + (
            " RETURNING id" if postgres else ""  # MariaDB: execute() returns the new id
        )
        self.port = "SELECT inet_server_port()" if postgres else "SELECT @@port"
        self.title = {
            "postgresql": "PostgreSQL primary + standby",
            "mariadb": "MariaDB primary + GTID replica",
            "galera": "MariaDB Galera, two nodes",
        }[name]


def _clusters(wanted: list[str] | None) -> list[Cluster]:
    env = os.environ.get
    found: dict[str, Cluster] = {}
    if env("ASYNCDB_TEST_PG_PRIMARY_URL") and env("ASYNCDB_TEST_PG_STANDBY_URL"):
        p, s = env("ASYNCDB_TEST_PG_PRIMARY_URL", ""), env("ASYNCDB_TEST_PG_STANDBY_URL", "")
        found["postgresql"] = Cluster("postgresql", p, s, p, [s])
    if env("ASYNCDB_TEST_MYSQL_PRIMARY_URL") and env("ASYNCDB_TEST_MYSQL_REPLICA_URL"):
        p, s = env("ASYNCDB_TEST_MYSQL_PRIMARY_URL", ""), env("ASYNCDB_TEST_MYSQL_REPLICA_URL", "")
        found["mariadb"] = Cluster("mariadb", p, s, p, [s])
    nodes = [u for u in env("ASYNCDB_TEST_GALERA_URLS", "").split(",") if u]
    if len(nodes) >= 2:
        first, second = nodes[:2]
        both = first.replace(_hostport(first), f"{_hostport(first)},{_hostport(second)}")
        found["galera"] = Cluster("galera", first, second, both, "auto")
    missing = [name for name in wanted or [] if name not in found]
    if missing or not found:
        raise SystemExit(
            f"no URLs for {', '.join(missing) or 'any cluster'}: start the servers "
            '(eval "$(bash scripts/replicas.sh start)"; '
            'eval "$(bash scripts/replicas-mysql.sh start)")'
        )
    return [found[name] for name in wanted] if wanted else list(found.values())


def _hostport(url: str) -> str:
    return url.rsplit("@", 1)[1].split("/", 1)[0]


async def _prepare(cluster: Cluster) -> None:
    primary, standby = cluster.primary, cluster.other
    async with Database(primary) as db:
        await db.execute("DROP TABLE IF EXISTS bench_replica")
        await db.execute(f"CREATE TABLE bench_replica (id {cluster.serial} PRIMARY KEY, v int)")
        await db.execute_many(
            "INSERT INTO bench_replica (v) VALUES (:v)", [{"v": i} for i in range(1000)]
        )
    async with Database(standby) as replica:  # wait until the standby has the table
        for _ in range(200):
            try:
                if await replica.fetch_val("SELECT count(*) FROM bench_replica") == 1000:
                    return
            except Exception:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the standby did not replay the benchmark table")


async def _readers(db: Database, readers: int, reads: int) -> float:
    """Reads per second of `readers` tasks, each `reads` fetch_one calls."""

    async def reader(r: int) -> None:
        for i in range(reads):
            await db.fetch_one(ONE, {"id": (r * reads + i) % 1000 + 1})

    start = time.perf_counter()
    await asyncio.gather(*(reader(r) for r in range(readers)))
    return readers * reads / (time.perf_counter() - start)


async def _write_then_read(db: Database, pairs: int, insert: str) -> float:
    """Microseconds per (INSERT, then fetch_one of that row) in one task."""
    start = time.perf_counter()
    for i in range(pairs):
        # execute() goes to the primary (fetch_val of an INSERT would first try a replica)
        new_id = await db.execute(insert, {"v": i})
        row = await db.fetch_one(ONE, {"id": new_id})
        assert row is not None, "read-your-writes broken: the new row was not seen"
    return (time.perf_counter() - start) / pairs * 1e6


async def main(cluster: Cluster, readers: int, reads: int, rounds: int) -> str:
    await _prepare(cluster)
    single = Database(cluster.primary, min_size=20, max_size=20)
    other = Database(cluster.other, min_size=20, max_size=20)  # the server routed reads use
    routed = Database(cluster.routed_url, replicas=cluster.routed, min_size=20, max_size=20)
    fallbacks: list[Any] = []
    routed.add_hook("routing_fallback", lambda _e, d: fallbacks.append(d.get("reason")))
    samples: dict[str, list[float]] = {}
    async with single, other, routed:
        for db in (single, other, routed):  # warm-up: every pool opens its connections
            await asyncio.create_task(_readers(db, readers, 1))
        for _ in range(rounds):
            for name, db in (("primary alone", single), ("other", other), ("routed", routed)):
                # fresh context per measurement: the routed write's position does not leak
                rate = await asyncio.create_task(_readers(db, readers, reads))
                samples.setdefault(f"read:{name}", []).append(rate)
                if db is other:
                    continue  # a replica takes no writes
                pair = await asyncio.create_task(_write_then_read(db, 50, cluster.insert))
                samples.setdefault(f"ryw:{name}", []).append(pair)
        served = await routed.fetch_val(cluster.port)
    med = {k: statistics.median(v) for k, v in samples.items()}
    reasons = {r: fallbacks.count(r) for r in sorted(set(fallbacks))}
    lines = [
        f"## {cluster.title}",
        "",
        f"{readers} concurrent readers × {reads} reads; 50 write-then-read pairs; "
        f"{rounds} rounds, medians. Routed reads were served by port {served} "
        f"(the other server: {_hostport(cluster.other).rsplit(':', 1)[-1]}).",
        "",
        "| workload | primary alone | the other server alone | routed | routed / primary "
        "alone | routed / the other server alone |",
        "|---|---|---|---|---|---|",
        f"| {readers} concurrent readers (reads/s) | {med['read:primary alone']:,.0f} | "
        f"{med['read:other']:,.0f} | {med['read:routed']:,.0f} | "
        f"{med['read:primary alone'] / med['read:routed']:.2f}× (time per read) | "
        f"{med['read:other'] / med['read:routed']:.2f}× (time per read) |",
        f"| write, then read it back (µs per pair) | {med['ryw:primary alone']:,.0f} | — | "
        f"{med['ryw:routed']:,.0f} | {med['ryw:routed'] / med['ryw:primary alone']:.2f}× | — |",
        "",
        f"Routing fallbacks to the primary during the run: {reasons or 'none'}.",
        "",
    ]
    return "\n".join(lines)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--reads", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cluster", action="append", choices=("postgresql", "mariadb", "galera"), default=None
    )
    args = parser.parse_args()
    tables = ["# Routing to a replica (both servers on the same machine)", ""]
    for cluster in _clusters(args.cluster):
        tables.append(asyncio.run(main(cluster, args.readers, args.reads, args.rounds)))
    table = "\n".join(tables)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replicas.md").write_text(table)


if __name__ == "__main__":
    run()
