"""A tour of asyncdb on SQLite: `python -m asyncdb.demo` (no server needed).

It shows concurrent decorated transactions (each task its own, some rolled back), a
savepoint rolled back inside a committed transaction, a connection handed to child tasks so
that they join the parent's transaction, and streaming a large result with flat memory.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

from asyncdb import Connection, Database, Rollback


async def main(url: str) -> None:
    async with Database(url) as db:
        await db.execute("DROP TABLE IF EXISTS orders")
        await db.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, amount INTEGER)"
        )

        print("1. 50 concurrent requests, each a @db.transaction(); every 5th one fails")

        @db.transaction()
        async def place_order(i: int) -> None:
            await db.execute(
                "INSERT INTO orders (customer, amount) VALUES (:c, :a)", {"c": f"c{i}", "a": i}
            )
            await asyncio.sleep(0)  # let the other requests run in between
            if i % 5 == 0:
                raise ValueError(f"order {i} rejected")

        results = await asyncio.gather(*(place_order(i) for i in range(50)), return_exceptions=True)
        failed = sum(isinstance(r, ValueError) for r in results)
        stored = await db.fetch_val("SELECT count(*) FROM orders")
        print(f"   {failed} requests failed and rolled back; {stored} orders stored")

        print("2. a savepoint: the inner block fails, the outer transaction commits")
        async with db.transaction():
            await db.execute("INSERT INTO orders (customer, amount) VALUES ('outer', 1)")
            try:
                async with db.transaction():
                    await db.execute("INSERT INTO orders (customer, amount) VALUES ('inner', 2)")
                    raise RuntimeError("inner step failed")
            except RuntimeError:
                pass
        names = [
            r["customer"]
            for r in await db.fetch_all(
                "SELECT customer FROM orders WHERE customer IN ('outer', 'inner')"
            )
        ]
        print(f"   kept: {names}")

        print("3. a connection handed to child tasks joins the parent's transaction")

        async def child(conn: Connection, i: int) -> None:
            await conn.execute(
                "INSERT INTO orders (customer, amount) VALUES (:c, 0)", {"c": f"child{i}"}
            )

        async with db.connection() as conn:
            async with conn.transaction():
                await asyncio.gather(*(asyncio.create_task(child(conn, i)) for i in range(3)))
                seen = await conn.fetch_val(
                    "SELECT count(*) FROM orders WHERE customer LIKE 'child%'"
                )
                print(f"   inside the transaction the parent sees {seen} child rows")
                raise Rollback  # roll everything back quietly
        after = await db.fetch_val("SELECT count(*) FROM orders WHERE customer LIKE 'child%'")
        print(f"   after the rollback: {after} child rows")

        print("4. streaming 200,000 rows with iterate()")
        total = 0
        rows = 0
        query = (
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :n) "
            "SELECT n FROM seq"
        )
        async for row in db.iterate(query, {"n": 200_000}):
            rows += 1
            total += row["n"]
        print(f"   {rows} rows streamed, sum {total}")
        print(f"pool: {db.pool_stats()}")


def run() -> None:
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
        return
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(main(f"sqlite:///{os.path.join(folder, 'demo.sqlite3')}"))


if __name__ == "__main__":
    run()
