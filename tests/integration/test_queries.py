"""Every public query method on every backend, raw SQL and SQLAlchemy Core."""

from __future__ import annotations

import datetime
import decimal
import enum
import json

import pytest
import sqlalchemy as sa

from asyncdb import Database, IntegrityError, ProgrammingError, Record


async def test_execute_fetch_methods(db: Database, items: str, backend: str) -> None:
    await db.execute(
        "INSERT INTO items (name, value) VALUES (:name, :value)", {"name": "a", "value": 1}
    )
    await db.execute_many(
        "INSERT INTO items (name, value) VALUES (:name, :value)",
        [{"name": "b", "value": 2}, {"name": "c", "value": 3}],
    )
    rows = await db.fetch_all("SELECT name, value FROM items ORDER BY value")
    assert [(r["name"], r[1], r.value) for r in rows] == [("a", 1, 1), ("b", 2, 2), ("c", 3, 3)]
    assert dict(rows[0]) == {"name": "a", "value": 1}
    assert rows[0]._mapping["name"] == "a"
    assert list(rows[0].keys()) == ["name", "value"]
    # the same row API on every backend (PostgreSQL's are asyncpg's own records, extended)
    assert all(isinstance(r, Record) for r in rows)
    assert list(rows[0]) == ["name", "value"] and "name" in rows[0]
    assert tuple(rows[0].values()) == ("a", 1)
    with pytest.raises(AttributeError, match="no column named 'nope'"):
        _ = rows[0].nope

    one = await db.fetch_one("SELECT name FROM items WHERE value = :v", {"v": 2})
    assert one is not None and one["name"] == "b"
    assert await db.fetch_one("SELECT name FROM items WHERE value = :v", {"v": 99}) is None
    assert await db.fetch_val("SELECT count(*) FROM items") == 3
    assert await db.fetch_val("SELECT name, value FROM items WHERE value = 3", column=1) == 3
    assert await db.fetch_val("SELECT name, value FROM items WHERE value = 3", column="name") == "c"
    assert await db.fetch_val("SELECT name FROM items WHERE value = 99") is None
    names = [r["name"] async for r in db.iterate("SELECT name FROM items ORDER BY name")]
    assert names == ["a", "b", "c"]


async def test_execute_returns_like_databases(db: Database, items: str, backend: str) -> None:
    if backend == "postgresql":
        new_id = await db.execute("INSERT INTO items (name) VALUES (:n) RETURNING id", {"n": "x"})
    else:
        new_id = await db.execute("INSERT INTO items (name) VALUES (:n)", {"n": "x"})
    assert new_id == await db.fetch_val("SELECT id FROM items WHERE name = 'x'")


async def test_literal_percent_and_escaped_colon(db: Database, items: str) -> None:
    await db.execute("INSERT INTO items (name) VALUES (:n)", {"n": "50%"})
    assert await db.fetch_val("SELECT name FROM items WHERE name LIKE '50%'") == "50%"
    assert await db.fetch_val("SELECT 'a\\:b'") == "a:b"


async def test_parameter_errors_are_clear(db: Database) -> None:
    with pytest.raises(ProgrammingError, match="missing value for query parameter :b"):
        await db.fetch_all("SELECT :a, :b", {"a": 1})
    with pytest.raises(ProgrammingError, match="does not have: \\['c'\\]"):
        await db.fetch_all("SELECT :a", {"a": 1, "c": 2})
    with pytest.raises(ProgrammingError, match="list of mappings"):
        await db.execute_many("SELECT :a", {"a": 1})  # type: ignore[arg-type]


async def test_driver_errors_are_wrapped(db: Database, items: str) -> None:
    await db.execute("INSERT INTO items (name) VALUES ('dup')")
    with pytest.raises(IntegrityError) as info:
        await db.execute("INSERT INTO items (name) VALUES ('dup')")
    assert info.value.orig is not None and info.value.__cause__ is info.value.orig
    with pytest.raises(ProgrammingError):
        await db.fetch_all("SELECT * FROM no_such_table")
    # statement-level errors outside a transaction leave the connection usable
    assert await db.fetch_val("SELECT count(*) FROM items") == 1


class Color(enum.Enum):
    red = "red"
    blue = "blue"


class Tags(sa.types.TypeDecorator[list[str]]):
    """Stored as "a,b,c"; a list in Python."""

    impl = sa.String(200)
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else ",".join(value)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> list[str] | None:
        return None if value is None else value.split(",")


metadata = sa.MetaData()
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.String(100), nullable=False),
    sa.Column("data", sa.JSON),
    sa.Column("created", sa.DateTime),
    sa.Column("price", sa.Numeric(10, 2)),
    sa.Column("color", sa.Enum(Color, native_enum=False)),
    sa.Column("done", sa.Boolean),
    sa.Column("tags", Tags),
)


@pytest.fixture
async def notes_table(db: Database) -> sa.Table:
    await db.execute(sa.text("DROP TABLE IF EXISTS notes"))
    await db.execute(sa.schema.CreateTable(notes))
    return notes


async def test_core_round_trip_with_typed_columns(db: Database, notes_table: sa.Table) -> None:
    when = datetime.datetime(2026, 11, 26, 12, 30, 5)
    await db.execute(
        notes.insert(),
        {
            "id": 1,
            "text": "hello",
            "data": {"a": [1, 2]},
            "created": when,
            "price": decimal.Decimal("9.99"),
            "color": Color.blue,
            "done": True,
            "tags": ["x", "y"],
        },
    )
    await db.execute_many(
        notes.insert(),
        [{"id": 2, "text": "two", "color": Color.red, "done": False}, {"id": 3, "text": "three"}],
    )
    row = await db.fetch_one(sa.select(notes).where(notes.c.id == 1))
    assert row is not None
    assert row["data"] == {"a": [1, 2]}
    assert row["created"] == when
    assert row["price"] == decimal.Decimal("9.99")
    assert row["color"] is Color.blue
    assert row["done"] is True
    assert row["tags"] == ["x", "y"]  # a TypeDecorator, both ways
    assert await db.fetch_val("SELECT tags FROM notes WHERE id = 1") == "x,y"  # stored as text
    assert row[notes.c.text] == "hello"

    rows = await db.fetch_all(sa.select(notes.c.id, notes.c.color).order_by(notes.c.id))
    assert [(r.id, r.color) for r in rows] == [(1, Color.blue), (2, Color.red), (3, None)]
    # the same construct shape with other values hits the compile cache and still binds them
    for wanted in (2, 3):
        assert await db.fetch_val(sa.select(notes.c.text).where(notes.c.id == wanted)) == (
            "two" if wanted == 2 else "three"
        )
    in_list = await db.fetch_all(
        sa.select(notes.c.id).where(notes.c.id.in_([1, 3])).order_by(notes.c.id)
    )
    assert [r.id for r in in_list] == [1, 3]

    await db.execute(notes.update().where(notes.c.id == 2).values(text="deux"))
    await db.execute(notes.delete().where(notes.c.id == 3))
    assert [r.text for r in await db.fetch_all(sa.select(notes).order_by(notes.c.id))] == [
        "hello",
        "deux",
    ]
    streamed = [r async for r in db.iterate(sa.select(notes).order_by(notes.c.id))]
    assert streamed[0]["data"] == {"a": [1, 2]} and streamed[0]["created"] == when
    assert await db.fetch_val(sa.select(sa.func.count()).select_from(notes)) == 2
    text_query = sa.text("SELECT text FROM notes WHERE id = :id")
    assert await db.fetch_val(text_query, {"id": 2}) == "deux"


async def test_json_as_text_round_trips(db: Database, backend: str) -> None:
    value = await db.fetch_val(sa.select(sa.cast(sa.literal(json.dumps({"k": 1})), sa.String)))
    assert json.loads(value) == {"k": 1}


async def test_iterate_streams_100k_rows(db: Database, items: str, backend: str) -> None:
    total = 100_000
    if backend == "postgresql":
        query = "SELECT g AS n FROM generate_series(1, :total) AS g"
    else:
        query = (
            "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :total) "
            "SELECT n FROM seq"
        )
    count = 0
    checksum = 0
    async with db.connection() as conn:
        if backend == "mysql":
            await conn.execute("SET SESSION max_recursive_iterations = 1000000")
        async for row in conn.iterate(query, {"total": total}):
            assert isinstance(row, Record)
            count += 1
            checksum += row["n"]
    assert count == total
    assert checksum == total * (total + 1) // 2
    stats = db.pool_stats()
    assert stats["in_use"] == 0


async def test_break_out_of_iterate_then_query(db: Database, items: str) -> None:
    await db.execute_many(
        "INSERT INTO items (name, value) VALUES (:n, :v)",
        [{"n": f"i{i}", "v": i} for i in range(50)],
    )
    async with db.connection() as conn:
        async for row in conn.iterate("SELECT value FROM items ORDER BY value"):
            if row["value"] == 3:
                break
        assert await conn.fetch_val("SELECT count(*) FROM items") == 50


async def test_unknown_option_and_scheme_are_rejected() -> None:
    from asyncdb import InterfaceError

    with pytest.raises(InterfaceError, match="unknown database options: bogus"):
        Database("sqlite:///x.db", bogus=1)
    with pytest.raises(InterfaceError, match="unsupported database url scheme 'oracle'"):
        Database("oracle://h/db")
