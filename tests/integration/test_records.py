"""Rows of joins (columns that share a name) and results with duplicate column names."""

from __future__ import annotations

import datetime

import sqlalchemy as sa

from asyncdb import Database

metadata = sa.MetaData()
articles = sa.Table(
    "rec_articles",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("title", sa.String(50)),
)
custom_date = sa.Table(
    "rec_custom_date",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("title", sa.String(50)),
    sa.Column("published", sa.Date),
)


async def _tables(db: Database) -> None:
    for table in (custom_date, articles):
        await db.execute(f"DROP TABLE IF EXISTS {table.name}")
    for table in (articles, custom_date):
        await db.execute(sa.schema.CreateTable(table))
    await db.execute(articles.insert(), {"id": 1, "title": "article"})
    await db.execute(
        custom_date.insert(), {"id": 2, "title": "dated", "published": datetime.date(2024, 1, 2)}
    )


async def test_join_rows_look_columns_up_by_their_table(db: Database, backend: str) -> None:
    await _tables(db)
    query = sa.select(articles, custom_date)
    for row in [await db.fetch_one(query), *(await db.fetch_all(query))]:
        assert row is not None
        assert row[articles.c.title] == "article"
        assert row[custom_date.c.title] == "dated"
        assert row[articles.c.id] == 1 and row[custom_date.c.id] == 2
        assert row[custom_date.c.published] == datetime.date(2024, 1, 2)  # processed
        assert row["title"] == "article"  # by name, the first column wins
    async for row in db.iterate(query):
        assert (row[articles.c.title], row[custom_date.c.title]) == ("article", "dated")
    # a label is looked up by its own object too
    label = custom_date.c.title.label("other")
    row = await db.fetch_one(sa.select(articles.c.title, label))
    assert row is not None and row[label] == "dated" and row["other"] == "dated"


async def test_duplicate_names_keep_every_column(db: Database, backend: str) -> None:
    for query in (
        "SELECT 1 AS id, 2 AS id",
        sa.select(sa.literal(1).label("id"), sa.literal(2).label("id")),
    ):
        row = await db.fetch_one(query)
        assert row is not None
        mapping = row._mapping
        assert list(mapping.keys()) == ["id", "id"]
        assert list(mapping.values()) == [1, 2]
        assert list(mapping.items()) == [("id", 1), ("id", 2)]
        assert len(mapping) == 2 and "id" in mapping
        assert mapping["id"] == 1  # the first wins by name
        # the row itself: the first too, except asyncpg's own records (plain SQL on
        # PostgreSQL), which keep the driver's look-up, the last
        last = backend == "postgresql" and isinstance(query, str)
        assert row["id"] == (2 if last else 1)
        assert dict(mapping) == {"id": 1}
        assert tuple(row.values()) == (1, 2) and row[1] == 2


async def test_mapping_of_a_plain_row(db: Database, backend: str) -> None:
    row = await db.fetch_one("SELECT 1 AS a, 'x' AS b")
    assert row is not None
    assert dict(row._mapping) == {"a": 1, "b": "x"}
    assert row._mapping == {"a": 1, "b": "x"}
    assert list(row._mapping) == ["a", "b"]
