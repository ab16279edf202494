"""The same workloads through each layer: the raw driver (pooled and held), asyncdb,
encode/databases and SQLAlchemy's asyncio engine (Core)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import sqlalchemy as sa

POOL = 20
ITEMS = sa.Table(
    "bench_items",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    *(sa.Column(f"c{i}", sa.Integer if i % 2 else sa.String(20)) for i in range(1, 10)),
)
WRITES = sa.Table(
    "bench_writes",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("v", sa.Integer),
)
ONE = "SELECT * FROM bench_items WHERE id = :id"
ALL = "SELECT * FROM bench_items ORDER BY id"
INSERT = "INSERT INTO bench_writes (v) VALUES (:v)"
MANY = "SELECT a.id, b.id AS id2 FROM bench_items a CROSS JOIN bench_items b"


def core_one(i: int) -> Any:
    return sa.select(ITEMS).where(ITEMS.c.id == i)


def core_sql(dialect: Any) -> str:
    """`core_one`'s SQL as the dialect renders it (`$1` / `%s` / `?`), for the raw drivers."""
    return str(core_one(0).compile(dialect=dialect))


class Contestant:
    """One layer under test. Every method does one operation of a workload."""

    name = ""

    async def start(self, url: str) -> None: ...
    async def stop(self) -> None: ...
    async def fetch_one(self, i: int) -> Any: ...
    async def fetch_one_core(self, i: int) -> Any: ...
    async def fetch_rows(self, sql: str) -> list[Any]: ...

    def block(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A block that keeps one connection for the calls inside it (`async with
        db.connection():`); nothing for the layers without one (raw held keeps one anyway)."""
        return contextlib.nullcontext()

    async def fetch_all(self) -> list[Any]: ...
    async def insert_tx(self, i: int) -> None: ...
    async def savepoint_tx(self, i: int) -> None: ...
    async def three_statement_tx(self, i: int) -> None: ...
    async def iterate(self, sql: str = MANY) -> int: ...


class AsyncdbContestant(Contestant):
    name = "asyncdb"
    options: ClassVar[dict[str, Any]] = {}

    async def start(self, url: str) -> None:
        from asyncdb import Database

        self.db = Database(url, min_size=POOL, max_size=POOL, **self.options)
        await self.db.connect()

        # SQLite: a transaction that reads and then writes takes the write lock at BEGIN
        # (isolation="immediate"), as the README tells SQLite users to; deferred, it conflicts.
        tx = {"isolation": "immediate"} if url.startswith("sqlite") else {}

        @self.db.transaction(**tx)
        async def three(i: int) -> None:
            await self.db.fetch_one(ONE, {"id": i % 1000 + 1})
            await self.db.execute(INSERT, {"v": i})
            await self.db.fetch_val("SELECT count(*) FROM bench_items WHERE id < :id", {"id": 5})

        self._three = three

    async def stop(self) -> None:
        await self.db.disconnect()

    async def fetch_one(self, i: int) -> Any:
        return await self.db.fetch_one(ONE, {"id": i})

    async def fetch_one_core(self, i: int) -> Any:
        return await self.db.fetch_one(core_one(i))

    async def fetch_all(self) -> list[Any]:
        return await self.db.fetch_all(ALL)

    async def fetch_rows(self, sql: str) -> list[Any]:
        return await self.db.fetch_all(sql)

    def block(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.db.connection()  # type: ignore[no-any-return]

    async def insert_tx(self, i: int) -> None:
        async with self.db.transaction():
            await self.db.execute(INSERT, {"v": i})

    async def savepoint_tx(self, i: int) -> None:
        async with self.db.transaction():
            await self.db.execute(INSERT, {"v": i})
            async with self.db.transaction():
                await self.db.execute(INSERT, {"v": i})

    async def three_statement_tx(self, i: int) -> None:
        await self._three(i)

    async def iterate(self, sql: str = MANY) -> int:
        n = 0
        async for _ in self.db.iterate(sql):
            n += 1
        return n


class AsyncdbResetAlwaysContestant(AsyncdbContestant):
    """asyncdb with `reset="always"`: every checkout that ran anything is reset before the
    next task gets it (one more round trip), the price of the cautious mode."""

    name = "asyncdb reset=always"
    options: ClassVar[dict[str, Any]] = {"reset": "always"}


class DatabasesContestant(AsyncdbContestant):
    """encode/databases runs asyncdb's code unchanged (the API is the same), apart from the
    decorated transaction, replaced by `async with` (its decorator shared state across
    concurrent tasks before PR #546: seed 003)."""

    name = "databases"

    async def start(self, url: str) -> None:
        from databases import Database

        pool = {} if url.startswith("sqlite") else {"min_size": POOL, "max_size": POOL}
        self.db = Database(url, **pool)
        await self.db.connect()

    async def three_statement_tx(self, i: int) -> None:
        async with self.db.transaction():
            await self.db.fetch_one(ONE, {"id": i % 1000 + 1})
            await self.db.execute(INSERT, {"v": i})
            await self.db.fetch_val("SELECT count(*) FROM bench_items WHERE id < :id", {"id": 5})


class SQLAlchemyContestant(Contestant):
    name = "sqlalchemy"

    async def start(self, url: str) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        scheme, rest = url.split("://", 1)
        driver = {"postgresql": "postgresql+asyncpg", "mysql": "mysql+aiomysql"}
        sa_url = f"{driver.get(scheme, 'sqlite+aiosqlite')}://{rest}"
        kwargs: dict[str, Any] = (
            {} if scheme == "sqlite" else {"pool_size": POOL, "max_overflow": 0}
        )
        self.engine = create_async_engine(sa_url, **kwargs)
        self.one, self.all, self.insert = sa.text(ONE), sa.text(ALL), sa.text(INSERT)
        self.count = sa.text("SELECT count(*) FROM bench_items WHERE id < :id")

    async def stop(self) -> None:
        await self.engine.dispose()

    async def fetch_one(self, i: int) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(self.one, {"id": i})).first()

    async def fetch_one_core(self, i: int) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(core_one(i))).first()

    async def fetch_all(self) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(self.all)).all())

    async def fetch_rows(self, sql: str) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.text(sql))).all())

    async def insert_tx(self, i: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(self.insert, {"v": i})

    async def savepoint_tx(self, i: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(self.insert, {"v": i})
            async with conn.begin_nested():
                await conn.execute(self.insert, {"v": i})

    async def three_statement_tx(self, i: int) -> None:
        async with self.engine.begin() as conn:
            (await conn.execute(self.one, {"id": i % 1000 + 1})).first()
            await conn.execute(self.insert, {"v": i})
            (await conn.execute(self.count, {"id": 5})).scalar()

    async def iterate(self, sql: str = MANY) -> int:
        n = 0
        async with self.engine.connect() as conn:
            result = await conn.stream(sa.text(sql))
            async for _ in result:
                n += 1
        return n


# -- the raw drivers ---------------------------------------------------------------------------


class RawContestant(Contestant):
    """The driver itself; `held=True` keeps one connection instead of a pool acquire per call."""

    def __init__(self, held: bool) -> None:
        self.held = held
        self.name = "raw (held)" if held else "raw (pool)"

    @contextlib.asynccontextmanager
    async def conn(self) -> AsyncIterator[Any]:
        if self.held:
            yield self.held_conn
        else:
            async with self.pool.acquire() as conn:
                yield conn


class RawPostgres(RawContestant):
    async def start(self, url: str) -> None:
        import asyncpg
        from sqlalchemy.dialects.postgresql import asyncpg as dialect

        self.core_sql = core_sql(dialect.dialect())
        self.pool = await asyncpg.create_pool(url, min_size=POOL, max_size=POOL)
        self.held_conn = await asyncpg.connect(url)

    async def stop(self) -> None:
        await self.pool.close()
        await self.held_conn.close()

    async def fetch_one(self, i: int) -> Any:
        async with self.conn() as conn:
            return await conn.fetchrow("SELECT * FROM bench_items WHERE id = $1", i)

    async def fetch_one_core(self, i: int) -> Any:
        # The fair baseline of a Core select(): the caller builds the same construct per
        # call (its own cost), then the driver runs SQL compiled ahead of time.
        core_one(i)
        async with self.conn() as conn:
            return await conn.fetchrow(self.core_sql, i)

    async def fetch_all(self) -> list[Any]:
        async with self.conn() as conn:
            return await conn.fetch(ALL)

    async def fetch_rows(self, sql: str) -> list[Any]:
        async with self.conn() as conn:
            return await conn.fetch(sql)

    async def insert_tx(self, i: int) -> None:
        async with self.conn() as conn, conn.transaction():
            await conn.execute("INSERT INTO bench_writes (v) VALUES ($1)", i)

    async def savepoint_tx(self, i: int) -> None:
        async with self.conn() as conn, conn.transaction():
            await conn.execute("INSERT INTO bench_writes (v) VALUES ($1)", i)
            async with conn.transaction():
                await conn.execute("INSERT INTO bench_writes (v) VALUES ($1)", i)

    async def three_statement_tx(self, i: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.fetchrow("SELECT * FROM bench_items WHERE id = $1", i % 1000 + 1)
            await conn.execute("INSERT INTO bench_writes (v) VALUES ($1)", i)
            await conn.fetchval("SELECT count(*) FROM bench_items WHERE id < $1", 5)

    async def iterate(self, sql: str = MANY) -> int:
        n = 0
        async with self.conn() as conn, conn.transaction():
            async for _ in conn.cursor(sql, prefetch=1000):
                n += 1
        return n


class RawMySQL(RawContestant):
    # the driver module, its name for the database argument, and where its SSCursor lives
    driver = "aiomysql"
    database_kwarg = "db"
    cursors = "aiomysql"

    async def start(self, url: str) -> None:
        import importlib

        from asyncdb import DatabaseURL

        module = importlib.import_module(self.driver)
        dialect = importlib.import_module(f"sqlalchemy.dialects.mysql.{self.driver}")
        u = DatabaseURL(url)
        kw = {
            "host": u.hostname,
            "port": u.port,
            "user": u.username,
            "password": u.password,
            self.database_kwarg: u.database,
            "autocommit": True,
        }
        self.core_sql = core_sql(dialect.dialect())
        self.ss_cursor = importlib.import_module(self.cursors).SSCursor
        self.pool = await module.create_pool(minsize=POOL, maxsize=POOL, **kw)
        self.held_conn = await module.connect(**kw)

    async def stop(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()
        self.held_conn.close()

    async def _run(self, conn: Any, sql: str, args: Any = None, fetch: str = "") -> Any:
        async with conn.cursor() as cur:
            await cur.execute(sql, args)
            if fetch == "one":
                return await cur.fetchone()
            if fetch == "all":
                return await cur.fetchall()
            return cur.lastrowid

    async def fetch_one(self, i: int) -> Any:
        async with self.conn() as conn:
            return await self._run(conn, "SELECT * FROM bench_items WHERE id = %s", (i,), "one")

    async def fetch_one_core(self, i: int) -> Any:
        core_one(i)  # the caller's own cost, as for asyncdb (see RawPostgres)
        async with self.conn() as conn:
            return await self._run(conn, self.core_sql, (i,), "one")

    async def fetch_all(self) -> list[Any]:
        async with self.conn() as conn:
            return list(await self._run(conn, ALL, None, "all"))

    async def fetch_rows(self, sql: str) -> list[Any]:
        async with self.conn() as conn:
            return list(await self._run(conn, sql, None, "all"))

    async def insert_tx(self, i: int) -> None:
        async with self.conn() as conn:
            await self._run(conn, "START TRANSACTION")
            await self._run(conn, "INSERT INTO bench_writes (v) VALUES (%s)", (i,))
            await conn.commit()

    async def savepoint_tx(self, i: int) -> None:
        async with self.conn() as conn:
            await self._run(conn, "START TRANSACTION")
            await self._run(conn, "INSERT INTO bench_writes (v) VALUES (%s)", (i,))
            await self._run(conn, "SAVEPOINT s1")
            await self._run(conn, "INSERT INTO bench_writes (v) VALUES (%s)", (i,))
            await self._run(conn, "RELEASE SAVEPOINT s1")
            await conn.commit()

    async def three_statement_tx(self, i: int) -> None:
        async with self.pool.acquire() as conn:
            await self._run(conn, "START TRANSACTION")
            await self._run(conn, "SELECT * FROM bench_items WHERE id = %s", (i % 1000 + 1,), "one")
            await self._run(conn, "INSERT INTO bench_writes (v) VALUES (%s)", (i,))
            await self._run(conn, "SELECT count(*) FROM bench_items WHERE id < %s", (5,), "one")
            await conn.commit()

    async def iterate(self, sql: str = MANY) -> int:
        n = 0
        async with self.conn() as conn, conn.cursor(self.ss_cursor) as cur:
            await cur.execute(sql)
            while rows := await cur.fetchmany(1000):
                for _ in rows:  # each row visited, as every other layer's loop does
                    n += 1
        return n


class RawSQLite(RawContestant):
    """aiosqlite has no pool: 'pool' opens a connection per call, 'held' keeps one."""

    async def start(self, url: str) -> None:
        import aiosqlite
        from sqlalchemy.dialects.sqlite import aiosqlite as dialect

        self.core_sql = core_sql(dialect.dialect())
        self.aiosqlite = aiosqlite
        self.path = url.split(":///", 1)[1]
        self.held_conn = await aiosqlite.connect(self.path, isolation_level=None)

    async def stop(self) -> None:
        await self.held_conn.close()

    @contextlib.asynccontextmanager
    async def conn(self) -> AsyncIterator[Any]:
        if self.held:
            yield self.held_conn
        else:
            async with self.aiosqlite.connect(self.path, isolation_level=None) as conn:
                yield conn

    async def fetch_one(self, i: int) -> Any:
        async with (
            self.conn() as conn,
            conn.execute("SELECT * FROM bench_items WHERE id = ?", (i,)) as cur,
        ):
            return await cur.fetchone()

    async def fetch_one_core(self, i: int) -> Any:
        core_one(i)  # the caller's own cost, as for asyncdb (see RawPostgres)
        async with self.conn() as conn, conn.execute(self.core_sql, (i,)) as cur:
            return await cur.fetchone()

    async def fetch_all(self) -> list[Any]:
        async with self.conn() as conn, conn.execute(ALL) as cur:
            return list(await cur.fetchall())

    async def fetch_rows(self, sql: str) -> list[Any]:
        async with self.conn() as conn, conn.execute(sql) as cur:
            return list(await cur.fetchall())

    async def insert_tx(self, i: int) -> None:
        async with self.conn() as conn:
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute("INSERT INTO bench_writes (v) VALUES (?)", (i,))
            await conn.execute("COMMIT")

    async def savepoint_tx(self, i: int) -> None:
        async with self.conn() as conn:
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute("INSERT INTO bench_writes (v) VALUES (?)", (i,))
            await conn.execute("SAVEPOINT s1")
            await conn.execute("INSERT INTO bench_writes (v) VALUES (?)", (i,))
            await conn.execute("RELEASE SAVEPOINT s1")
            await conn.execute("COMMIT")

    three_statement_tx = None  # type: ignore[assignment]  # no pool to share between tasks

    async def iterate(self, sql: str = MANY) -> int:
        n = 0
        async with self.conn() as conn, conn.execute(sql) as cur:
            async for _ in cur:
                n += 1
        return n


RAW = {"postgresql": RawPostgres, "mysql": RawMySQL, "sqlite": RawSQLite}


# -- MySQL through asyncmy (Cython) as well as aiomysql ------------------------------------


def _asyncmy_url(url: str) -> str:
    return "mysql+asyncmy://" + url.split("://", 1)[1]


class RawAsyncmy(RawMySQL):
    """asyncmy itself: the same PyMySQL-shaped API as aiomysql, so RawMySQL's workloads."""

    driver = "asyncmy"
    database_kwarg = "database"
    cursors = "asyncmy.cursors"

    def __init__(self, held: bool) -> None:
        super().__init__(held)
        self.name = "raw asyncmy (held)" if held else "raw asyncmy (pool)"


class AsyncdbAsyncmyContestant(AsyncdbContestant):
    name = "asyncdb asyncmy"

    async def start(self, url: str) -> None:
        await super().start(_asyncmy_url(url))


class DatabasesAsyncmyContestant(DatabasesContestant):
    name = "databases asyncmy"

    async def start(self, url: str) -> None:
        await super().start(_asyncmy_url(url))


class SQLAlchemyAsyncmyContestant(SQLAlchemyContestant):
    name = "sqlalchemy asyncmy"

    async def start(self, url: str) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        await super().start(url)
        await self.engine.dispose()
        self.engine = create_async_engine(_asyncmy_url(url), pool_size=POOL, max_overflow=0)


def contestants(backend: str) -> list[Contestant]:
    raw = RAW[backend]
    players = [
        raw(held=False),
        raw(held=True),
        AsyncdbContestant(),
        AsyncdbResetAlwaysContestant(),
        DatabasesContestant(),
        SQLAlchemyContestant(),
    ]
    if backend == "mysql":
        players += [
            RawAsyncmy(held=False),
            RawAsyncmy(held=True),
            AsyncdbAsyncmyContestant(),
            DatabasesAsyncmyContestant(),
            SQLAlchemyAsyncmyContestant(),
        ]
    return players
