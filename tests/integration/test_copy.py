"""COPY on a real PostgreSQL: 10k records in and out, COPY inside transactions, bad records
as asyncdb DataErrors (never a raw driver error, never a silently shortened row), the
caller's own failing code, timeouts and cancellation; other backends refuse clearly."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import backends

from asyncdb import (
    Database,
    DataError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    ProgrammingError,
    QueryTimeoutError,
    Rollback,
    TransactionAbortedError,
)

pytestmark = pytest.mark.timeout(120)
N = 10_000
ITEMS = sa.Table(
    "copy_items",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(8), nullable=False),
    sa.Column("price", sa.Numeric(10, 2)),
)


@pytest.fixture
async def pg(db: Database) -> AsyncIterator[Database]:
    await db.execute("DROP TABLE IF EXISTS copy_items")
    await db.execute(
        "CREATE TABLE copy_items "
        "(id int PRIMARY KEY, name varchar(8) NOT NULL, price numeric(10,2))"
    )
    yield db
    await db.execute("DROP TABLE IF EXISTS copy_items")


async def count(db: Database) -> int:
    return int(await db.fetch_val("SELECT count(*) FROM copy_items"))


def records(n: int = N, start: int = 0) -> list[tuple[Any, ...]]:
    from decimal import Decimal

    return [(i, f"n{i}", Decimal(i) / 4) for i in range(start, start + n)]


@backends("postgresql")
async def test_copy_10k_records_in_and_out(pg: Database) -> None:
    assert await pg.copy_records_to_table("copy_items", records=records()) == N
    assert await count(pg) == N
    assert pg.pool_stats()["in_use"] == 0  # the checkout ended with the COPY

    out = io.BytesIO()
    copied = await pg.copy_from_query(
        "SELECT id, name, price FROM copy_items WHERE id >= :low ORDER BY id",
        {"low": 0},
        output=out,
        format="csv",
    )
    assert copied == N
    lines = out.getvalue().decode().splitlines()
    assert len(lines) == N and lines[0] == "0,n0,0.00" and lines[-1] == "9999,n9999,2499.75"

    chunks: list[bytes] = []

    async def collect(data: bytes) -> None:
        chunks.append(data)

    query = sa.select(ITEMS.c.id, ITEMS.c.name).where(ITEMS.c.id < 5).order_by(ITEMS.c.id)
    assert await pg.copy_from_query(query, output=collect) == 5  # a Core select, text format
    assert b"".join(chunks) == b"".join(b"%d\tn%d\n" % (i, i) for i in range(5))

    # and back in: the CSV we got out, as a file object, into an emptied table
    await pg.execute("TRUNCATE copy_items")
    out.seek(0)
    assert await pg.copy_to_table("copy_items", source=out, format="csv") == N
    assert await pg.fetch_val("SELECT sum(price) FROM copy_items") == sum(r[2] for r in records())


@backends("postgresql")
async def test_copy_sources_and_records_of_every_kind(pg: Database) -> None:
    async def gen_records() -> AsyncIterator[tuple[Any, ...]]:
        for i in range(3):
            yield (i, f"a{i}", None)

    assert await pg.copy_records_to_table("copy_items", records=gen_records()) == 3
    assert (
        await pg.copy_records_to_table(
            "copy_items", records=((i, f"b{i}") for i in range(10, 13)), columns=["id", "name"]
        )
        == 3
    )

    async def gen_bytes() -> AsyncIterator[bytes]:
        yield b"20,c20,1.5\n21,"
        yield b"c21,\n"

    assert await pg.copy_to_table("copy_items", source=gen_bytes(), format="csv") == 2
    csv = b"id;name\n30;d30\n"
    assert (
        await pg.copy_to_table(
            "copy_items",
            source=csv,
            columns=["id", "name"],
            format="csv",
            header=True,
            delimiter=";",
        )
        == 1
    )
    assert await count(pg) == 9
    assert await pg.fetch_val("SELECT price FROM copy_items WHERE id = 21") is None


@backends("postgresql")
async def test_copy_in_a_rolled_back_transaction_leaves_nothing(pg: Database) -> None:
    async with pg.transaction():
        assert await pg.copy_records_to_table("copy_items", records=records(100)) == 100
        assert await pg.copy_to_table("copy_items", source=b"500\tx\t1\n") == 1
        assert await count(pg) == 101  # the transaction sees its own COPY

        async def elsewhere() -> int:
            return await count(pg)  # another task: another connection

        assert await asyncio.create_task(elsewhere()) == 0  # not committed yet
        raise Rollback
    assert await count(pg) == 0

    async with pg.transaction():
        await pg.copy_records_to_table("copy_items", records=records(10))
    assert await count(pg) == 10  # and a committed one stays


BAD_RECORDS = [
    pytest.param([(1, "a", 1), ("x", "b", 2)], "record 2: .*integer", id="wrong-type"),
    pytest.param([(1, "a", 1, "extra")], "record 1 has 4 values for 3 columns", id="too-long"),
    pytest.param([(1, "a")], "record 1 has 2 values for 3 columns", id="too-short"),
    pytest.param(["abc"], "record 1 is a str", id="not-a-tuple"),
    pytest.param([(1, "much too long", 1)], "value too long", id="server-refuses"),
    pytest.param([(1, "a", 10**20)], "numeric field overflow", id="server-overflow"),
]


@backends("postgresql")
@pytest.mark.parametrize(("bad", "message"), BAD_RECORDS)
async def test_a_bad_record_is_a_data_error(pg: Database, bad: list[Any], message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        await pg.copy_records_to_table("copy_items", records=bad)
    assert caught.value.backend == "postgresql"
    assert await count(pg) == 0  # all or nothing
    assert pg.pool_stats()["invalidated"] == 0  # the connection was fine, and kept

    # Inside a transaction the server failed the COPY, so the transaction is failed too.
    with pytest.raises(TransactionAbortedError):
        async with pg.transaction():
            await pg.copy_records_to_table("copy_items", records=records(5))
            with pytest.raises(DataError):
                await pg.copy_records_to_table("copy_items", records=bad)
            await pg.fetch_val("SELECT 1")
    assert await count(pg) == 0
    assert await pg.copy_records_to_table("copy_items", records=records(5)) == 5


@backends("postgresql")
async def test_server_errors_are_classified(pg: Database) -> None:
    await pg.copy_records_to_table("copy_items", records=records(1))
    with pytest.raises(IntegrityError):
        await pg.copy_records_to_table("copy_items", records=records(1))
    with pytest.raises(DataError, match="invalid input syntax"):
        await pg.copy_to_table("copy_items", source=b"zz\tq\t1\n")
    with pytest.raises(ProgrammingError, match="does not exist"):
        await pg.copy_records_to_table("no_such_table", records=[(1,)])
    with pytest.raises(ProgrammingError, match="does not exist"):
        await pg.copy_from_query("SELECT nope FROM copy_items", output=io.BytesIO())
    assert await count(pg) == 1


@backends("postgresql")
async def test_the_callers_own_errors_reach_the_caller_as_raised(pg: Database) -> None:
    def bad_records() -> Any:
        yield (1, "a", 1)
        raise LookupError("my records failed")

    with pytest.raises(LookupError, match="my records failed"):
        await pg.copy_records_to_table("copy_items", records=bad_records())

    async def bad_source() -> AsyncIterator[bytes]:
        yield b"1\ta\t1\n"
        raise OSError("my disk failed")  # not a lost database connection

    with pytest.raises(OSError, match="my disk failed"):
        await pg.copy_to_table("copy_items", source=bad_source())
    assert pg.pool_stats()["invalidated"] == 0  # COPY IN: the driver sent CopyFail; kept

    with pytest.raises(ProgrammingError, match="binary mode"):
        await pg.copy_to_table("copy_items", source=io.StringIO("1\ta\t1\n"))
    assert await count(pg) == 0

    await pg.copy_records_to_table("copy_items", records=records(3000))

    async def bad_output(data: bytes) -> None:
        raise KeyError("my output failed")

    with pytest.raises(KeyError, match="my output failed"):
        await pg.copy_from_query("SELECT * FROM copy_items", output=bad_output)
    # COPY OUT cannot be stopped half-way: that connection was discarded, not reused.
    assert pg.pool_stats()["invalidated"] == 1
    assert await count(pg) == 3000

    with pytest.raises(DisconnectionError):  # in a transaction, it is lost with its connection
        async with pg.transaction():
            with pytest.raises(KeyError):
                await pg.copy_from_query("SELECT * FROM copy_items", output=bad_output)
            await pg.fetch_val("SELECT 1")
    assert await count(pg) == 3000


@backends("postgresql")
async def test_a_copy_past_its_timeout_is_cancelled_on_the_server(pg: Database) -> None:
    async def slow() -> AsyncIterator[bytes]:
        yield b"1\ta\t1\n"
        await asyncio.sleep(3600)
        yield b"2\tb\t2\n"

    with pytest.raises(QueryTimeoutError):
        await pg.copy_to_table("copy_items", source=slow(), timeout=1)
    assert await count(pg) == 0
    assert await pg.fetch_val("SELECT 1") == 1
    active = await pg.fetch_val(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%' AND state = 'active'"
    )
    assert active == 0


@backends("postgresql")
async def test_a_cancelled_copy_leaves_nothing_behind(pg: Database) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[tuple[Any, ...]]:
        yield (1, "a", 1)
        started.set()
        await asyncio.sleep(3600)
        yield (2, "b", 2)

    task = asyncio.create_task(pg.copy_records_to_table("copy_items", records=slow()))
    await asyncio.wait_for(started.wait(), 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await count(pg) == 0
    assert pg.pool_stats()["in_use"] == 0


@backends("postgresql")
async def test_bad_copy_arguments_are_refused_before_anything_is_sent(pg: Database) -> None:
    with pytest.raises(ProgrammingError, match="unknown COPY options: fromat"):
        await pg.copy_to_table("copy_items", source=b"", fromat="csv")
    with pytest.raises(ProgrammingError, match="not a file name"):
        await pg.copy_to_table("copy_items", source="data.csv")
    with pytest.raises(ProgrammingError, match="not a file name"):
        await pg.copy_from_query("SELECT 1", output="out.csv")
    with pytest.raises(ProgrammingError, match="columns must be a list"):
        await pg.copy_records_to_table("copy_items", records=[], columns="id")
    with pytest.raises(ProgrammingError, match="table name"):
        await pg.copy_records_to_table("", records=[])
    with pytest.raises(ProgrammingError, match="records must be an iterable"):
        await pg.copy_records_to_table("copy_items", records=5)
    with pytest.raises(ProgrammingError, match="as a mapping"):
        await pg.copy_from_query("SELECT $1", 5, output=io.BytesIO())  # type: ignore[arg-type]
    assert await pg.copy_records_to_table("copy_items", records=[]) == 0


@backends("mysql", "sqlite")
async def test_other_backends_refuse_copy(db: Database, backend: str) -> None:
    needs = f"COPY needs PostgreSQL; this database is {backend}"
    with pytest.raises(InterfaceError, match=needs):
        await db.copy_records_to_table("t", records=[(1,)])
    with pytest.raises(InterfaceError, match=needs):
        await db.copy_to_table("t", source=b"1\n")
    with pytest.raises(InterfaceError, match=needs):
        await db.copy_from_query("SELECT 1", output=io.BytesIO())
    async with db.connection() as conn:
        with pytest.raises(InterfaceError, match=needs):
            await conn.copy_records_to_table("t", records=[(1,)])
