"""Bulk load on PostgreSQL: COPY vs execute_many (asyncdb) vs execute_many (encode/databases).

    python -m benchmarks.copy_load                       # 100k rows, 3 rounds
    python -m benchmarks.copy_load --rows 20000 --rounds 3

Loads the same rows (int, text, numeric) into an emptied table, each way once per round,
in a shuffled order each round; reports the median time and rows per second. The raw asyncpg
calls are there for reference. The URL comes from ASYNCDB_TEST_POSTGRES_URL. The markdown
table is printed and written to benchmarks/results/copy.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from asyncdb import Database

RESULTS = Path(__file__).parent / "results"
INSERT = "INSERT INTO bench_copy (id, name, amount) VALUES (:id, :name, :amount)"
Load = Callable[[list[tuple[Any, ...]]], Awaitable[None]]


def rows(n: int) -> list[tuple[Any, ...]]:
    return [(i, f"name {i}", Decimal(i) / 100) for i in range(n)]


async def main(url: str, n: int, rounds: int) -> str:
    import asyncpg
    from databases import Database as EncodeDatabase

    db = Database(url, min_size=1, max_size=2)
    encode = EncodeDatabase(url, min_size=1, max_size=2)
    await db.connect()
    await encode.connect()
    raw = await asyncpg.connect(url)
    try:
        await db.execute("DROP TABLE IF EXISTS bench_copy")
        await db.execute(
            "CREATE TABLE bench_copy (id int PRIMARY KEY, name text NOT NULL, amount numeric)"
        )
        data = rows(n)
        mappings = [{"id": i, "name": s, "amount": a} for i, s, a in data]

        async def asyncdb_copy(_: list[tuple[Any, ...]]) -> None:
            await db.copy_records_to_table("bench_copy", records=data)

        async def asyncdb_many(_: list[tuple[Any, ...]]) -> None:
            async with db.transaction():
                await db.execute_many(INSERT, mappings)

        async def databases_many(_: list[tuple[Any, ...]]) -> None:
            async with encode.transaction():
                await encode.execute_many(INSERT, mappings)

        async def raw_copy(_: list[tuple[Any, ...]]) -> None:
            await raw.copy_records_to_table("bench_copy", records=data)

        async def raw_many(_: list[tuple[Any, ...]]) -> None:
            async with raw.transaction():
                await raw.executemany(
                    "INSERT INTO bench_copy (id, name, amount) VALUES ($1, $2, $3)", data
                )

        loads: dict[str, Load] = {
            "asyncdb copy_records_to_table": asyncdb_copy,
            "asyncdb execute_many (one transaction)": asyncdb_many,
            "databases execute_many (one transaction)": databases_many,
            "asyncpg copy_records_to_table (raw)": raw_copy,
            "asyncpg executemany (raw)": raw_many,
        }
        times: dict[str, list[float]] = {name: [] for name in loads}
        for _ in range(rounds):
            order = list(loads)
            random.shuffle(order)
            for name in order:
                await db.execute("TRUNCATE bench_copy")
                start = time.perf_counter()
                await loads[name](data)
                times[name].append(time.perf_counter() - start)
                assert await db.fetch_val("SELECT count(*) FROM bench_copy") == n, name
        await db.execute("DROP TABLE bench_copy")
    finally:
        await raw.close()
        await encode.disconnect()
        await db.disconnect()

    best = statistics.median(times["asyncdb copy_records_to_table"])
    lines = [
        f"{n} rows (int, text, numeric) into an empty PostgreSQL table; median of {rounds} rounds",
        "",
        "| method | seconds | rows/s | × asyncdb COPY |",
        "|---|---:|---:|---:|",
    ]
    for name, samples in times.items():
        median = statistics.median(samples)
        lines.append(f"| {name} | {median:.3f} | {n / median:,.0f} | {median / best:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get("ASYNCDB_TEST_POSTGRES_URL")
    if not url:
        raise SystemExit("set ASYNCDB_TEST_POSTGRES_URL (scripts/servers.sh start prints it)")
    table = asyncio.run(main(url, args.rows, args.rounds))
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "copy.md").write_text(table)
