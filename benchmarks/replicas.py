"""Routing to a replica: what it costs, on one machine.

    eval "$(bash scripts/replicas.sh start)"      # a PostgreSQL primary + standby on loopback
    python -m benchmarks.replicas                  # 200 readers, 3 rounds
    python -m benchmarks.replicas --readers 50 --reads 20 --rounds 5

Both servers run on the same machine, so routing cannot make reads faster here: the point is
the overhead of asyncdb's routing and of its read-your-writes check, next to the same work on
the primary alone. Workloads, interleaved round by round:

1. 200 concurrent readers, each `fetch_one` by key in a loop: throughput (reads/s) on the
   primary alone (`Database(primary)`), and routed (`Database(primary, replicas=[standby])`:
   the reads go to the standby).
2. A write, then a read of it in the same task (read-your-writes): time per pair on the
   primary alone, and routed (the read waits for the standby to replay the write, up to
   `read_your_writes_wait`, or falls back to the primary: the fallbacks are counted).

URLs from ASYNCDB_TEST_PG_PRIMARY_URL and ASYNCDB_TEST_PG_STANDBY_URL. The markdown table is
printed and written to benchmarks/results/replicas.md.
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


async def _prepare(primary: str, standby: str) -> None:
    async with Database(primary) as db:
        await db.execute("DROP TABLE IF EXISTS bench_replica")
        await db.execute("CREATE TABLE bench_replica (id serial PRIMARY KEY, v int)")
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


async def _write_then_read(db: Database, pairs: int) -> float:
    """Microseconds per (INSERT, then fetch_one of that row) in one task."""
    start = time.perf_counter()
    for i in range(pairs):
        # execute() goes to the primary (fetch_val of an INSERT would first try a replica)
        new_id = await db.execute(
            "INSERT INTO bench_replica (v) VALUES (:v) RETURNING id", {"v": i}
        )
        row = await db.fetch_one(ONE, {"id": new_id})
        assert row is not None, "read-your-writes broken: the new row was not seen"
    return (time.perf_counter() - start) / pairs * 1e6


async def main(primary: str, standby: str, readers: int, reads: int, rounds: int) -> str:
    await _prepare(primary, standby)
    single = Database(primary, min_size=20, max_size=20)
    routed = Database(primary, replicas=[standby], min_size=20, max_size=20)
    fallbacks: list[Any] = []
    routed.add_hook("routing_fallback", lambda _e, d: fallbacks.append(d.get("reason")))
    samples: dict[str, list[float]] = {}
    async with single, routed:
        for _ in range(rounds):
            for name, db in (("primary alone", single), ("routed", routed)):
                # fresh context per measurement: the routed write's position does not leak
                rate = await asyncio.create_task(_readers(db, readers, reads))
                samples.setdefault(f"read:{name}", []).append(rate)
                pair = await asyncio.create_task(_write_then_read(db, 50))
                samples.setdefault(f"ryw:{name}", []).append(pair)
        served = await routed.fetch_val("SELECT inet_server_port()")
    med = {k: statistics.median(v) for k, v in samples.items()}
    reasons = {r: fallbacks.count(r) for r in sorted(set(fallbacks))}
    lines = [
        "# Routing to a replica (PostgreSQL primary + standby, same machine)",
        "",
        f"{readers} concurrent readers × {reads} reads; 50 write-then-read pairs; "
        f"{rounds} rounds, medians. Routed reads were served by port {served} "
        f"(standby {standby.rsplit(':', 1)[-1].split('/')[0]}).",
        "",
        "| workload | primary alone | routed | routed / primary alone |",
        "|---|---|---|---|",
        f"| {readers} concurrent readers (reads/s) | {med['read:primary alone']:,.0f} | "
        f"{med['read:routed']:,.0f} | {med['read:primary alone'] / med['read:routed']:.2f}× "
        "(time per read) |",
        f"| write, then read it back (µs per pair) | {med['ryw:primary alone']:,.0f} | "
        f"{med['ryw:routed']:,.0f} | {med['ryw:routed'] / med['ryw:primary alone']:.2f}× |",
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
    args = parser.parse_args()
    primary = os.environ.get("ASYNCDB_TEST_PG_PRIMARY_URL")
    standby = os.environ.get("ASYNCDB_TEST_PG_STANDBY_URL")
    if not primary or not standby:
        raise SystemExit(
            "set ASYNCDB_TEST_PG_PRIMARY_URL and ASYNCDB_TEST_PG_STANDBY_URL "
            '(eval "$(bash scripts/replicas.sh start)")'
        )
    table = asyncio.run(main(primary, standby, args.readers, args.reads, args.rounds))
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replicas.md").write_text(table)


if __name__ == "__main__":
    run()
