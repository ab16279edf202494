"""The row API on every backend, whatever the row is made of underneath (asyncdb builds its
rows as tuples of the values with the names on a per-result class; PostgreSQL plain queries
return asyncpg's records): columns named like tuple or Mapping methods, equality, hashing,
pickling, and Core rows read by position from a driver record."""

from __future__ import annotations

import pickle
from collections.abc import Mapping

import sqlalchemy as sa

from asyncdb import Database, Record

things = sa.Table(
    "recapi_things",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(20)),
)


async def test_columns_named_count_and_index_are_columns(db: Database) -> None:
    row = await db.fetch_one("SELECT 3 AS count, 4 AS index_, 5 AS id")
    assert row is not None
    assert row.count == 3 and row["count"] == 3  # not tuple.count
    assert row.index_ == 4 and row.id == 5
    other = await db.fetch_one("SELECT 1 AS id")
    assert other is not None
    try:
        other.count  # noqa: B018
    except AttributeError as exc:
        assert "count" in str(exc)
    else:
        raise AssertionError("a row without a count column has no count attribute")


async def test_mapping_behaviour_equality_hash_and_pickle(db: Database, backend: str) -> None:
    rows = await db.fetch_all("SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, 'y' ORDER BY 1")
    first, second = rows
    assert isinstance(first, Record) and isinstance(first, Mapping)
    assert list(first) == ["a", "b"] and len(first) == 2 and "a" in first and 1 not in first
    assert dict(first) == {"a": 1, "b": "x"} and first.get("missing", 7) == 7
    assert first[0] == 1 and first[-1] == "x" and tuple(first.values()) == (1, "x")
    assert first == (1, "x") and first != (2, "y") and first != second
    assert hash(first) == hash((1, "x"))
    if backend != "postgresql":  # asyncpg's records compare with tuples only
        assert first == {"a": 1, "b": "x"} and not (first != {"a": 1, "b": "x"})
        assert repr(first) == "<Record a=1, b='x'>"
        # asyncpg's records refuse pickling; asyncdb's own rows travel (e.g. to a worker)
        again = pickle.loads(pickle.dumps(first))
        assert again == first and again.b == "x" and dict(again) == dict(first)


async def test_core_rows_by_position_from_any_driver_row(db: Database) -> None:
    await db.execute("DROP TABLE IF EXISTS recapi_things")
    await db.execute(sa.schema.CreateTable(things))
    await db.execute_many(things.insert(), [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])
    rows = await db.fetch_all(sa.select(things.c.id, things.c.name).order_by(things.c.id))
    assert [tuple(r.values()) for r in rows] == [(1, "one"), (2, "two")]
    assert [list(r) for r in rows] == [["id", "name"]] * 2
    assert rows[1][things.c.name] == "two" and rows[1].name == "two"
    streamed = [r async for r in db.iterate(sa.select(things).order_by(things.c.id))]
    assert streamed == rows
