"""Python calls per operation, asyncdb vs the raw driver on a held connection (deterministic:
unaffected by the load on the machine), and a short interleaved timing of the same pairs.

    python -m benchmarks.calls [--backends mysql postgresql] [--ops 200] [--profile WORKLOAD]

URLs from ASYNCDB_TEST_{POSTGRES,MYSQL}_URL (the benchmark tables are created). On MySQL the
pairs run twice: aiomysql and asyncmy. `--profile savepoint_tx` prints asyncdb's top
functions by call count for that workload (what the remaining gap is made of).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .contestants import (
    AsyncdbAsyncmyContestant,
    AsyncdbContestant,
    Contestant,
    RawAsyncmy,
    RawMySQL,
    RawPostgres,
)
from .run import event_loop_runner, prepare

Op = Callable[[Contestant, int], Awaitable[Any]]
WORKLOADS: dict[str, Op] = {
    "fetch_one": lambda c, i: c.fetch_one(i % 1000 + 1),
    "fetch_one_core": lambda c, i: c.fetch_one_core(i % 1000 + 1),
    "fetch_all": lambda c, i: c.fetch_all(),
    "insert_tx": lambda c, i: c.insert_tx(i),
    "savepoint_tx": lambda c, i: c.savepoint_tx(i),
    "three_statement_tx": lambda c, i: c.three_statement_tx(i),
    "concurrent_200": lambda c, i: asyncio.gather(
        *(c.three_statement_tx(i * 200 + k) for k in range(200))
    ),
    "iterate_10k": lambda c, i: c.iterate("SELECT a.id, b.id AS id2 FROM bench_items a "
                                          "CROSS JOIN bench_items b LIMIT 10000"),
}  # fmt: skip
SLOW = {"fetch_all", "iterate_10k", "concurrent_200"}  # fewer calls of these


async def count_calls(c: Contestant, op: Op, n: int) -> float:
    for i in range(5):
        await op(c, i)  # warm caches, connections, compiled statements
    profile = cProfile.Profile()
    profile.enable()
    for i in range(n):
        await op(c, i)
    profile.disable()
    return pstats.Stats(profile).total_calls / n  # type: ignore[attr-defined,no-any-return]


async def timed(pair: list[Contestant], op: Op, n: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {c.name: [] for c in pair}
    for i in range(n):
        random.shuffle(pair)
        for c in pair:
            start = time.perf_counter()
            await op(c, i)
            samples[c.name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


async def show_profile(c: Contestant, op: Op, n: int) -> None:
    profile = cProfile.Profile()
    profile.enable()
    for i in range(n):
        await op(c, i)
    profile.disable()
    stats = pstats.Stats(profile)
    stats.sort_stats("ncalls").print_stats(40)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", nargs="*", default=["postgresql", "mysql"])
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--profile", default=None)
    parser.add_argument("--no-time", action="store_true")
    args = parser.parse_args()
    env = {"postgresql": "ASYNCDB_TEST_POSTGRES_URL", "mysql": "ASYNCDB_TEST_MYSQL_URL"}
    for backend in args.backends:
        url = os.environ[env[backend]]
        await prepare(url)
        pairs: list[tuple[str, Contestant, Contestant]] = []
        if backend == "postgresql":
            pairs.append(("postgresql", RawPostgres(held=True), AsyncdbContestant()))
        else:
            pairs.append(("mariadb aiomysql", RawMySQL(held=True), AsyncdbContestant()))
            pairs.append(("mariadb asyncmy", RawAsyncmy(held=True), AsyncdbAsyncmyContestant()))
        for label, raw, ours in pairs:
            await raw.start(url)
            await ours.start(url)
            try:
                for name in args.workloads:
                    op = WORKLOADS[name]
                    n = max(args.ops // 10, 5) if name in SLOW else args.ops
                    if args.profile == name:
                        print(f"--- {label} {name}: asyncdb's calls by count ({n} ops)")
                        await show_profile(ours, op, n)
                        continue
                    raw_calls = await count_calls(raw, op, n)
                    our_calls = await count_calls(ours, op, n)
                    line = (
                        f"{label:18} {name:20} calls/op raw {raw_calls:9.0f}"
                        f"  asyncdb {our_calls:9.0f} (+{our_calls - raw_calls:.0f})"
                    )
                    if not args.no_time:
                        t = await timed([raw, ours], op, n)
                        ratio = t[ours.name] / t[raw.name]
                        line += (
                            f"   time raw {t[raw.name] * 1e6:8.0f} µs"
                            f"  asyncdb {t[ours.name] * 1e6:8.0f} µs  {ratio:.2f}×"
                        )
                    print(line, flush=True)
            finally:
                await ours.stop()
                await raw.stop()


if __name__ == "__main__":
    event_loop_runner()[1](main())
