"""SQLite through aiosqlite.

aiosqlite runs one thread per connection. We hand it whole functions (`_execute`) so that a
statement and its fetch cost one hop to the thread instead of three; the sqlite3 connection
runs in autocommit mode (`isolation_level=None`) so that only asyncdb opens transactions.
"""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from sqlalchemy import types as sa_types
from sqlalchemy.dialects.sqlite import DATETIME as SA_DATETIME
from sqlalchemy.dialects.sqlite import aiosqlite as sa_aiosqlite

from .._exceptions import InterfaceError
from .._statements import first_keyword
from .._url import DatabaseURL
from ._common import connect_timeout, connect_within, import_driver, parse_bool
from .base import (
    ErrorKind,
    ErrorScope,
    ExecuteResult,
    Failure,
    RawRow,
    TransactionOptions,
)

__all__ = ["SQLiteBackend"]

# SQLite is always serializable; these name how BEGIN takes its locks.
_ISOLATION = {
    "serializable": "BEGIN IMMEDIATE",
    "immediate": "BEGIN IMMEDIATE",
    "deferred": "BEGIN DEFERRED",
    "exclusive": "BEGIN EXCLUSIVE",
}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Pragmas reset to SQLite's defaults on an in-memory connection (a file one is reopened).
_DEFAULT_PRAGMAS = (
    "PRAGMA foreign_keys = OFF",
    "PRAGMA cache_size = -2000",
    "PRAGMA recursive_triggers = OFF",
    "PRAGMA case_sensitive_like = OFF",
    "PRAGMA temp_store = DEFAULT",
    "PRAGMA query_only = OFF",
    "PRAGMA defer_foreign_keys = OFF",
)
# SQLite URI filename parameters, as encode/databases accepts them in the URL query string.
_URI_VALUES = {"mode": ("ro", "rw", "rwc", "memory"), "cache": ("shared", "private")}
_CLOSED_TEXTS = ("no active connection", "connection closed", "closed database")
_PROGRAMMING_TEXTS = ("syntax error", "no such table", "no such column", "already exists")


class SQLiteBackend:
    """aiosqlite connections; WAL mode for files, a busy timeout, explicit BEGIN."""

    name: ClassVar[str] = "sqlite"
    record_class = None
    can_recover: ClassVar[bool] = True

    def __init__(self, url: DatabaseURL, options: dict[str, Any]) -> None:
        self._aiosqlite = import_driver("aiosqlite", "sqlite")
        self.url = url
        self.dialect = sa_aiosqlite.dialect()
        # per instance: SQLAlchemy's own dialect class is left as it is
        self.dialect.colspecs = {**self.dialect.colspecs, sa_types.DateTime: _NaiveDateTime}
        self.path, self._uri = _filename(url.database or ":memory:", options)
        self._mode = _uri_value(self.path, "mode") if self._uri else None
        # One connection holds a memory database (shared cache or not): the pool keeps exactly
        # one open while connected, so it lives as long as the Database is connected, and
        # nothing else references it once the pool closes.
        self.is_memory = (
            self.path.partition("?")[0] in (":memory:", "file::memory:") or self._mode == "memory"
        )
        self._busy_timeout = float(options.pop("busy_timeout", options.pop("timeout", 5.0)))
        self._connect_timeout = connect_timeout(options)
        self._gate: asyncio.Lock | None = None
        self._gate_loop: asyncio.AbstractEventLoop | None = None

    @staticmethod
    def adapt_parameter(value: Any) -> Any:
        """sqlite3's own types, plus dates and times as ISO text (what its default adapters,
        deprecated in Python 3.12, produced), without touching sqlite3's global registry."""
        if value is None or isinstance(value, int | float | str | bytes):
            if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
                raise OverflowError("the int does not fit SQLite's 64-bit INTEGER")
            return value
        if isinstance(value, datetime.datetime):
            return value.isoformat(" ")
        if isinstance(value, datetime.date | datetime.time):
            return value.isoformat()
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        if isinstance(value, uuid.UUID):
            return str(value)
        raise TypeError(f"a {type(value).__name__} cannot be sent to SQLite")

    async def connect(self) -> Any:
        # the file open and the WAL switch (which waits on a busy database) are bounded too
        return await connect_within(self._open(), self._connect_timeout, self.path)

    async def _open(self) -> Any:
        raw = await self._aiosqlite.connect(
            self.path, isolation_level=None, timeout=self._busy_timeout, uri=self._uri
        )
        if not self.is_memory and self._mode != "ro":  # ro cannot switch the journal mode
            try:
                await self.command(raw, "PRAGMA journal_mode=WAL")  # closes its cursor
            except BaseException:
                self.terminate(raw)
                raise
        return raw

    async def close(self, raw: Any) -> None:
        await raw.close()

    def terminate(self, raw: Any) -> None:
        # Nothing waits for a terminated connection: close it the way an orphan is closed
        # (aiosqlite's stop() would answer a future on this loop, which may be closed by the
        # time the thread gets there: "Event loop is closed" raised in the worker thread).
        self.orphan(raw)

    def abandon(self, raw: Any) -> None:
        # The worker thread does not exist in a forked child; never touch the sqlite handle.
        raw._running = False

    async def cancel(self, raw: Any) -> bool:
        connection = raw._connection
        if connection is None or not raw._running:
            return False
        connection.interrupt()  # thread-safe; the running statement ends with "interrupted"
        try:
            async with asyncio.timeout(self._connect_timeout):
                await raw._execute(lambda: None)  # queued behind it: runs once it has ended
        except Exception:
            return False
        return True

    def orphan(self, raw: Any) -> None:
        # aiosqlite's stop() would have its thread answer a future of the current loop,
        # which may be closed by then: queue the same close with no future to answer.
        connection = raw._connection
        if connection is not None:
            connection.interrupt()
        raw._running = False
        stop = sys.modules[type(raw).__module__]._STOP_RUNNING_SENTINEL  # ends the thread

        def close_and_stop() -> Any:
            if raw._connection is not None:
                raw._connection.close()
                raw._connection = None
            return stop

        raw._tx.put_nowait((None, close_and_stop))

    async def recover(self, raw: Any) -> None:
        """Stop what still runs in aiosqlite's thread, wait for it, roll back what is open."""
        connection = raw._conn
        connection.interrupt()  # thread-safe; the cancelled statement ends with "interrupted"

        def reset() -> None:
            if connection.in_transaction:
                connection.rollback()

        await raw._execute(reset)  # queued behind the interrupted call: runs once it is done

    async def reset(self, raw: Any) -> Any:
        if not self.is_memory:
            # A file database: a fresh connection is the only reset that forgets every
            # pragma, attached database, temp object and loaded extension.
            fresh = await self.connect()
            await self.close(raw)
            return fresh
        # An in-memory database lives in this connection: clean up in place.
        conn = raw._conn

        def clean() -> None:
            attached = [row[1] for row in conn.execute("PRAGMA database_list").fetchall()]
            for name in attached:
                if name not in ("main", "temp"):
                    conn.execute(f'DETACH DATABASE "{name}"')
            temp = conn.execute(
                "SELECT type, name FROM sqlite_temp_master WHERE type IN ('table', 'view')"
                " AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
            for kind, name in temp:
                conn.execute(f'DROP {kind.upper()} IF EXISTS temp."{name}"')
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            for pragma in _DEFAULT_PRAGMAS:
                conn.execute(pragma)

        await raw._execute(clean)
        return raw

    def in_transaction(self, raw: Any) -> bool:
        connection = raw._connection
        return connection is not None and bool(connection.in_transaction)

    def is_closed(self, raw: Any) -> bool:
        return raw._connection is None or not raw._running

    async def ping(self, raw: Any) -> None:
        await raw._execute(raw._conn.execute, "SELECT 1")

    async def command(self, raw: Any, sql: str) -> str | None:
        conn = raw._conn
        await raw._execute(lambda: conn.execute(sql).close())
        return None

    async def execute(self, raw: Any, sql: str, args: Sequence[Any]) -> ExecuteResult:
        conn = raw._conn

        def run() -> ExecuteResult:
            cursor = conn.execute(sql, args)
            try:
                row = cursor.fetchone() if cursor.description else None
                # sqlite3's lastrowid is the connection's last insert rowid: stale after an
                # UPDATE or DELETE. Only an INSERT/REPLACE statement reports its own.
                inserted = first_keyword(sql) in ("INSERT", "REPLACE")
                return ExecuteResult(
                    rowcount=cursor.rowcount if cursor.rowcount >= 0 else None,
                    lastrowid=cursor.lastrowid if inserted and cursor.lastrowid else None,
                    value=row[0] if row else None,
                )
            finally:
                cursor.close()

        result: ExecuteResult = await raw._execute(run)
        return result

    async def execute_many(self, raw: Any, sql: str, args: Sequence[Sequence[Any]]) -> None:
        conn = raw._conn
        await raw._execute(lambda: conn.executemany(sql, args).close())

    async def fetch(
        self, raw: Any, sql: str, args: Sequence[Any]
    ) -> tuple[list[str], list[RawRow]]:
        conn = raw._conn

        def run() -> tuple[list[str], list[RawRow]]:
            cursor = conn.execute(sql, args)
            try:
                rows = cursor.fetchall()
                return _columns(cursor), rows
            finally:
                cursor.close()

        result: tuple[list[str], list[RawRow]] = await raw._execute(run)
        return result

    async def stream(
        self, raw: Any, sql: str, args: Sequence[Any], batch: int
    ) -> AsyncIterator[tuple[list[str], list[RawRow]]]:
        conn = raw._conn
        cursor = await raw._execute(conn.execute, sql, args)
        try:
            columns = _columns(cursor)
            while rows := await raw._execute(cursor.fetchmany, batch):
                yield columns, rows
        finally:
            if raw._connection is not None and raw._running:
                await raw._execute(cursor.close)

    def begin_sql(self, options: TransactionOptions) -> list[str]:
        if options.isolation is None:
            # Deferred: readers never wait; the first write joins the writers' line.
            return ["BEGIN DEFERRED"]
        name = options.isolation.lower().replace(" ", "_")
        if name not in _ISOLATION:
            raise InterfaceError(
                f"unknown isolation level {options.isolation!r} for sqlite; expected one of: "
                + ", ".join(_ISOLATION)
            )
        return [_ISOLATION[name]]

    def transaction_gate(self, options: TransactionOptions) -> tuple[asyncio.Lock, float] | None:
        if options.isolation is None or options.isolation == "deferred":
            return None  # deferred: the gate is taken at the first write (write_gate)
        return self._writers(options)

    def write_gate(self, options: TransactionOptions) -> tuple[asyncio.Lock, float] | None:
        if options.isolation is not None:
            return None  # deferred by name: as before, no line at all
        return self._writers(options)

    def _writers(self, options: TransactionOptions) -> tuple[asyncio.Lock, float] | None:
        if self.is_memory or options.readonly:
            return None  # one shared connection, or a reader: nothing to line up for
        loop = asyncio.get_running_loop()
        if self._gate is None or self._gate_loop is not loop:  # new loop, or a forked child
            self._gate, self._gate_loop = asyncio.Lock(), loop
        return self._gate, self._busy_timeout

    def classify(self, exc: BaseException, raw: Any) -> Failure | None:
        text = str(exc).lower()
        if isinstance(exc, ValueError) and any(t in text for t in _CLOSED_TEXTS):
            return Failure(ErrorKind.DISCONNECT, ErrorScope.TRANSACTION)
        if not isinstance(exc, sqlite3.Error):
            return None
        code = getattr(exc, "sqlite_errorcode", None)
        # SQLite may roll a transaction back on its own after BUSY, FULL, IOERR, NOMEM or
        # INTERRUPT; the only way to know is to ask whether autocommit is back on.
        lost = (
            raw is not None and raw._connection is not None and not raw._connection.in_transaction
        )
        scope = ErrorScope.TRANSACTION if lost else ErrorScope.STATEMENT
        if any(t in text for t in _CLOSED_TEXTS):
            return Failure(ErrorKind.DISCONNECT, ErrorScope.TRANSACTION, code=code)
        if "database is locked" in text or "database is busy" in text:
            return Failure(ErrorKind.CONFLICT, scope, code=code)
        return Failure(_kind(exc, text), scope, code=code)


def _kind(exc: sqlite3.Error, text: str) -> ErrorKind:
    if isinstance(exc, sqlite3.IntegrityError):
        return ErrorKind.INTEGRITY
    if isinstance(exc, sqlite3.ProgrammingError):
        return ErrorKind.PROGRAMMING
    if isinstance(exc, sqlite3.DataError):
        return ErrorKind.DATA
    if isinstance(exc, sqlite3.InterfaceError):
        return ErrorKind.INTERFACE
    if any(t in text for t in _PROGRAMMING_TEXTS):
        return ErrorKind.PROGRAMMING
    return ErrorKind.OPERATIONAL


def _columns(cursor: Any) -> list[str]:
    return [d[0] for d in cursor.description] if cursor.description else []


class _NaiveDateTime(SA_DATETIME):
    """SQLAlchemy's SQLite DATETIME, refusing aware values: it would store their wall clock
    without the offset, another instant, and give back a naive datetime."""

    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        process = super().bind_processor(dialect)

        def refuse_aware(value: Any) -> Any:
            if isinstance(value, datetime.datetime) and value.utcoffset() is not None:
                raise ValueError(
                    "SQLite DATETIME keeps no time zone; pass a naive value (e.g. in UTC)"
                )
            return process(value) if process is not None else value

        return refuse_aware


def _filename(path: str, options: dict[str, Any]) -> tuple[str, bool]:
    """Turn the URL's path and its `uri`, `mode` and `cache` options into what sqlite3
    opens: a plain path, or a `file:` URI (opened with uri=True) carrying mode and cache."""
    uri = parse_bool(options.pop("uri", False)) or path.startswith("file:")
    params = {}
    for name, allowed in _URI_VALUES.items():
        if name in options:
            value = str(options.pop(name)).lower()
            if value not in allowed:
                raise InterfaceError(
                    f"sqlite option {name}={value!r} is not one of {', '.join(allowed)}"
                )
            params[name] = value
    if not uri and not params:
        return path, False
    if not path.startswith("file:"):
        path = "file:" + quote(path)
    if params:
        path += ("&" if "?" in path else "?") + urlencode(params)
    return path, True


def _uri_value(path: str, name: str) -> str | None:
    """A parameter of a `file:` URI (the last one wins, as in SQLite)."""
    query = path.partition("?")[2]
    values = [v for k, _, v in (p.partition("=") for p in query.split("&")) if k == name]
    return values[-1].lower() if values else None
