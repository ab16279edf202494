"""Every value type round-trips (sent as a parameter, read back) on every backend.

Plain SQL: what each driver returns is stated per backend in `PLAIN` (a documented table:
where a backend has no such type, the stored form, or a clear refusal). Core with typed
columns: the same Python type and value back everywhere.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import os
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import backends
from sqlalchemy.dialects import postgresql

from asyncdb import Database, DataError

UTC = datetime.UTC
PLUS2 = datetime.timezone(datetime.timedelta(hours=2))
NAIVE = datetime.datetime(2024, 2, 29, 23, 59, 58, 123456)
AWARE = datetime.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=PLUS2)
BIG_BYTES = os.urandom(1024 * 1024)
BIG_TEXT = "añ€😀漢" * (1024 * 1024 // 5)
UNICODE = "emoji 😀👍🏽, CJK 漢字かな한글, combining e\u0301 a\u0308"
DEC = decimal.Decimal("1234567890.1234567890")  # 20 significant digits
UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Refused:
    """The backend refuses the value with a DataError naming the parameter."""


REFUSED = Refused()
SAME = object()  # the value itself comes back


# id: (value, column type per backend, plain-SQL result per backend; SAME when unchanged)
def _cols(pg: str, my: str, lite: str) -> dict[str, str]:
    return {"postgresql": pg, "mysql": my, "sqlite": lite}


BLOB = _cols("BYTEA", "LONGBLOB", "BLOB")
TEXT = _cols("TEXT", "TEXT", "TEXT")
JSON = _cols("JSONB", "JSON", "TEXT")
EVERYWHERE_REFUSED = {"postgresql": REFUSED, "mysql": REFUSED, "sqlite": REFUSED}
MICRO_TIME = datetime.time(12, 34, 56, 789012)
AS_TIMEDELTA = datetime.timedelta(hours=12, minutes=34, seconds=56, microseconds=789012)

# id: (value, column type per backend, plain-SQL result per backend; the value when absent)
PLAIN: dict[str, tuple[Any, dict[str, str], dict[str, Any]]] = {
    "bytes-nul": (b"\x00a\x00\xff\x00", BLOB, {}),
    "bytes-1mib": (BIG_BYTES, BLOB, {}),
    "bytearray": (bytearray(b"\x00\x01"), BLOB,
                  {"postgresql": b"\x00\x01", "mysql": b"\x00\x01", "sqlite": b"\x00\x01"}),
    "unicode": (UNICODE, TEXT, {}),
    "text-1mib": (BIG_TEXT, _cols("TEXT", "LONGTEXT", "TEXT"), {}),
    "bigint-min": (-(2**63), _cols("BIGINT", "BIGINT", "INTEGER"), {}),
    "bigint-max": (2**63 - 1, _cols("BIGINT", "BIGINT", "INTEGER"), {}),
    # SQLite has no DECIMAL: refused rather than rounded through a float
    "decimal-20": (DEC, _cols("NUMERIC(30,10)", "DECIMAL(30,10)", "TEXT"), {"sqlite": REFUSED}),
    "float": (1.0625, _cols("DOUBLE PRECISION", "DOUBLE", "REAL"), {}),
    # BOOLEAN is TINYINT(1) on MySQL and an INTEGER on SQLite
    "bool": (True, _cols("BOOLEAN", "BOOLEAN", "BOOLEAN"), {"mysql": 1, "sqlite": 1}),
    "none": (None, TEXT, {}),
    # SQLite stores dates and times as ISO text and gives back that text
    "date": (datetime.date(2024, 2, 29), _cols("DATE", "DATE", "DATE"),
             {"sqlite": "2024-02-29"}),
    "datetime-naive": (NAIVE, _cols("TIMESTAMP", "DATETIME(6)", "TIMESTAMP"),
                       {"sqlite": "2024-02-29 23:59:58.123456"}),
    # MySQL DATETIME has no offset: refused, as PyMySQL would store the wall clock
    "datetime-aware": (AWARE, _cols("TIMESTAMPTZ", "DATETIME(6)", "TEXT"),
                       {"mysql": REFUSED, "sqlite": "2024-02-29 23:59:58.123456+02:00"}),
    # PyMySQL reads TIME as a timedelta
    "time": (MICRO_TIME, _cols("TIME", "TIME(6)", "TIME"),
             {"mysql": AS_TIMEDELTA, "sqlite": "12:34:56.789012"}),
    "timedelta": (datetime.timedelta(days=1, seconds=5, microseconds=7),
                  _cols("INTERVAL", "TIME(6)", "TEXT"), {"sqlite": REFUSED}),
    "uuid": (UID, _cols("UUID", "CHAR(36)", "TEXT"), {"mysql": str(UID), "sqlite": str(UID)}),
    # dicts and lists are JSON only on PostgreSQL; elsewhere pass json.dumps(value)
    "json-dict": ({"a": [1, 2, {"b": "ü😀"}], "n": None}, JSON,
                  {"mysql": REFUSED, "sqlite": REFUSED}),
    "json-list": ([1, "two", [3.5, True]], _cols("JSON", "JSON", "TEXT"),
                  {"mysql": REFUSED, "sqlite": REFUSED}),
    "enum": (Color.RED, TEXT, EVERYWHERE_REFUSED),  # pass .value, or use a Core Enum
    "object": (object(), TEXT, EVERYWHERE_REFUSED),
}  # fmt: skip


async def _fresh(db: Database, name: str, column_sql: str, backend: str) -> None:
    await db.execute(f"DROP TABLE IF EXISTS {name}")
    engine = " ENGINE=InnoDB" if backend == "mysql" else ""
    await db.execute(f"CREATE TABLE {name} (id INTEGER PRIMARY KEY, v {column_sql}){engine}")


@pytest.mark.parametrize("case", list(PLAIN))
async def test_plain_sql_round_trip(db: Database, backend: str, case: str) -> None:
    value, columns, results = PLAIN[case]
    await _fresh(db, "types_plain", columns[backend], backend)
    expected = results.get(backend, SAME)
    if expected is REFUSED:
        async with db.transaction():
            # named on every backend (asyncpg's own "$1" is translated back to :v)
            with pytest.raises(DataError, match=r"query parameter :v\b"):
                await db.execute("INSERT INTO types_plain (id, v) VALUES (1, :v)", {"v": value})
            # nothing reached the server: the transaction goes on
            await db.execute("INSERT INTO types_plain (id, v) VALUES (2, NULL)")
        assert await db.fetch_val("SELECT count(*) FROM types_plain") == 1
        return
    await db.execute("INSERT INTO types_plain (id, v) VALUES (1, :v)", {"v": value})
    got = await db.fetch_val("SELECT v FROM types_plain WHERE id = 1")
    want = value if expected is SAME else expected
    assert isinstance(got, type(want))  # asyncpg's UUID subclasses uuid.UUID
    assert got == want  # aware datetimes compare as instants
    if case == "datetime-aware" and backend == "postgresql":
        assert got.utcoffset() is not None


@backends("postgresql")
@pytest.mark.parametrize(
    ("column_sql", "value"), [("INTEGER[]", [1, -2, 2**31 - 1]), ("TEXT[]", ["a", "😀", ""])]
)
async def test_postgres_arrays_plain(
    db: Database, backend: str, column_sql: str, value: Any
) -> None:
    await _fresh(db, "types_plain", column_sql, backend)
    await db.execute("INSERT INTO types_plain (id, v) VALUES (1, :v)", {"v": value})
    assert await db.fetch_val("SELECT v FROM types_plain") == value


@backends("postgresql", "mysql", "sqlite")
async def test_json_column_text_read_back(db: Database, backend: str) -> None:
    """JSON sent as text (json.dumps) everywhere; what a plain SELECT returns per backend."""
    columns = {"postgresql": "JSONB", "mysql": "JSON", "sqlite": "TEXT"}
    await _fresh(db, "types_plain", columns[backend], backend)
    await db.execute("INSERT INTO types_plain (id, v) VALUES (1, :v)", {"v": '{"a": [1, "ü"]}'})
    got = await db.fetch_val("SELECT v FROM types_plain")
    if backend == "postgresql":
        assert got == {"a": [1, "ü"]}
    elif backend == "mysql":
        version = await db.fetch_val("SELECT VERSION()")
        if "mariadb" in version.lower():
            # MariaDB's JSON is LONGTEXT with a CHECK: no JSON type code reaches the client
            assert isinstance(got, str) and got == '{"a": [1, "ü"]}'
        else:
            assert got == {"a": [1, "ü"]}  # MySQL: decoded by column type (JSON = 245)
    else:
        assert got == '{"a": [1, "ü"]}'


async def test_parameter_errors_name_the_parameter(db: Database, backend: str) -> None:
    """Values the driver cannot adapt: an asyncdb DataError naming the parameter."""
    await _fresh(db, "types_plain", "BIGINT", backend)
    cases: list[Any] = [object(), {1, 2}]
    if backend != "postgresql":
        cases.append([1, 2])  # a list as a scalar (on PostgreSQL a list is an array)
    if backend == "sqlite":
        cases.append(2**64)  # over 64 bits
    for bad in cases:
        with pytest.raises(DataError) as info:
            await db.execute(
                "INSERT INTO types_plain (id, v) VALUES (:id, :value)", {"id": 1, "value": bad}
            )
        assert ":value" in str(info.value) or "$2" in str(info.value), str(info.value)
    if backend != "postgresql":  # asyncpg's own message says "$2"; ours always name it
        with pytest.raises(DataError, match=r"query parameter :value: a object"):
            await db.execute(
                "INSERT INTO types_plain (id, v) VALUES (:id, :value)",
                {"id": 1, "value": object()},
            )
    assert await db.fetch_val("SELECT count(*) FROM types_plain") == 0


# --- Core with typed columns: the exact Python type back on every backend -------------------

CORE: dict[str, tuple[sa.types.TypeEngine[Any], Any]] = {
    "large-binary": (sa.LargeBinary(), BIG_BYTES),
    "bytes-nul": (sa.LargeBinary(), b"\x00\x00x\x00"),
    "numeric": (sa.Numeric(30, 10, asdecimal=True), DEC),
    "datetime-naive": (sa.DateTime(), NAIVE),
    "interval": (sa.Interval(), datetime.timedelta(days=3, seconds=7, microseconds=11)),
    "uuid": (sa.Uuid(), UID),
    "json-dict": (sa.JSON(), {"a": [1, 2, {"b": "ü😀"}], "n": None}),
    "json-list": (sa.JSON(), [1, "two", [3.5, True]]),
    "enum": (sa.Enum(Color, native_enum=False), Color.GREEN),
    "date": (sa.Date(), datetime.date(1999, 12, 31)),
    "time": (sa.Time(), datetime.time(1, 2, 3, 456789)),
    "bigint-min": (sa.BigInteger(), -(2**63)),
    "bigint-max": (sa.BigInteger(), 2**63 - 1),
    "bool": (sa.Boolean(), False),
    "float": (sa.Float(), 1.0625),
    "string": (sa.String(200), UNICODE),
    "text": (sa.Text(), BIG_TEXT),
    "none": (sa.Text(), None),
}


def _mysql_type(type_: Any) -> Any:
    """MySQL needs lengths/precision where the generic type leaves them out."""
    from sqlalchemy.dialects import mysql

    if isinstance(type_, sa.LargeBinary):
        return mysql.LONGBLOB()
    if isinstance(type_, sa.Text):
        return mysql.LONGTEXT()
    if isinstance(type_, sa.DateTime):
        return mysql.DATETIME(fsp=6, timezone=type_.timezone)
    if isinstance(type_, sa.Time):
        return mysql.TIME(fsp=6)
    return type_


async def _core_table(db: Database, backend: str, type_: Any) -> sa.Table:
    if backend == "mysql":
        type_ = _mysql_type(type_)
    table = sa.Table(
        "types_core",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("v", type_),
    )
    await db.execute("DROP TABLE IF EXISTS types_core")
    await db.execute(sa.schema.CreateTable(table))
    return table


@pytest.mark.parametrize("case", list(CORE))
async def test_core_round_trip(db: Database, backend: str, case: str) -> None:
    type_, value = CORE[case]
    table = await _core_table(db, backend, type_)
    await db.execute(table.insert(), {"id": 1, "v": value})
    got = await db.fetch_val(sa.select(table.c.v).where(table.c.id == 1))
    assert isinstance(got, type(value))
    if (backend, case) in CORE_LIMITS:
        value = CORE_LIMITS[backend, case]
    assert got == value
    row = await db.fetch_one(sa.select(table))
    assert row is not None and row[table.c.v] == value


# SQLAlchemy's own emulations where a backend has no such type (documented limits):
CORE_LIMITS = {
    # Interval is a DATETIME offset from the epoch: whole seconds on MySQL
    ("mysql", "interval"): datetime.timedelta(days=3, seconds=7),
    # Numeric is REAL on SQLite (a float: ~16 significant digits); use a String for exact ones
    ("sqlite", "numeric"): decimal.Decimal(float(DEC)).quantize(decimal.Decimal("1E-10")),
}


@backends("postgresql")
async def test_core_aware_datetime_and_arrays_postgres(db: Database, backend: str) -> None:
    table = await _core_table(db, backend, sa.DateTime(timezone=True))
    await db.execute(table.insert(), {"id": 1, "v": AWARE})
    got = await db.fetch_val(sa.select(table.c.v))
    assert got == AWARE and got.utcoffset() is not None  # the instant is kept
    for item_type, value in ((sa.Integer(), [1, 2, 3]), (sa.Text(), ["x", "😀"])):
        table = await _core_table(db, backend, postgresql.ARRAY(item_type))
        await db.execute(table.insert(), {"id": 1, "v": value})
        assert await db.fetch_val(sa.select(table.c.v)) == value


@backends("mysql", "sqlite")
async def test_core_aware_datetime_refused_without_time_zones(db: Database, backend: str) -> None:
    """MySQL DATETIME and SQLite keep no offset: an aware value is refused rather than
    stored as its wall clock (another instant)."""
    table = await _core_table(db, backend, sa.DateTime(timezone=True))
    async with db.transaction():
        with pytest.raises(DataError, match=r":v: .*no time zone"):
            await db.execute(table.insert(), {"id": 1, "v": AWARE})
        await db.execute(table.insert(), {"id": 2, "v": NAIVE})  # the transaction goes on
    assert await db.fetch_val(sa.select(table.c.v)) == NAIVE


async def test_core_bind_processor_errors_are_data_errors(db: Database, backend: str) -> None:
    """A Core type refusing a value (an Enum given a value it does not have): DataError."""
    table = await _core_table(db, backend, sa.Enum(Color, native_enum=False, validate_strings=True))
    with pytest.raises(DataError, match="query parameter :v: "):
        await db.execute(table.insert(), {"id": 1, "v": "purple"})
    with pytest.raises(DataError, match="query parameter :v: "):
        await db.execute_many(table.insert(), [{"id": 1, "v": Color.RED}, {"id": 2, "v": 3}])
    assert await db.fetch_val(sa.select(sa.func.count()).select_from(table)) == 0


async def test_execute_many_binary_and_refusal(db: Database, backend: str) -> None:
    """execute_many goes through the same escaping and the same parameter check."""
    await _fresh(db, "types_plain", BLOB[backend], backend)
    blobs = [b"\x00\x01", b"'\\\x00", BIG_BYTES]
    await db.execute_many(
        "INSERT INTO types_plain (id, v) VALUES (:id, :v)",
        [{"id": i, "v": b} for i, b in enumerate(blobs)],
    )
    rows = await db.fetch_all("SELECT v FROM types_plain ORDER BY id")
    assert [bytes(r["v"]) for r in rows] == blobs
    # a streamed query (MySQL: the unbuffered cursor) escapes bytes parameters the same way
    streamed = [
        r["v"] async for r in db.iterate("SELECT v FROM types_plain WHERE v = :v", {"v": blobs[1]})
    ]
    assert streamed == [blobs[1]]
    with pytest.raises(DataError, match=r":v|\$2"):
        await db.execute_many(
            "INSERT INTO types_plain (id, v) VALUES (:id, :v)",
            [{"id": 10, "v": b"x"}, {"id": 11, "v": object()}],
        )
