"""SQLite through aiosqlite.

aiosqlite runs one thread per connection. We hand it whole functions (`_execute`) so that a
statement and its fetch cost one hop to the thread instead of three; the sqlite3 connection
runs in autocommit mode (`isolation_level=None`) so that only asyncdb opens transactions.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

from sqlalchemy.dialects.sqlite import aiosqlite as sa_aiosqlite

from .._exceptions import InterfaceError
from .._url import DatabaseURL
from ._common import import_driver, parse_bool
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
        self.path, self._uri = _filename(url.database or ":memory:", options)
        self._mode = _uri_value(self.path, "mode") if self._uri else None
        # One connection holds a memory database (shared cache or not): the pool keeps exactly
        # one open while connected, so it lives as long as the Database is connected, and
        # nothing else references it once the pool closes.
        self.is_memory = (
            self.path.partition("?")[0] in (":memory:", "file::memory:") or self._mode == "memory"
        )
        self._busy_timeout = float(options.pop("busy_timeout", options.pop("timeout", 5.0)))
        self._gate: asyncio.Lock | None = None
        self._gate_loop: asyncio.AbstractEventLoop | None = None

    async def connect(self) -> Any:
        raw = await self._aiosqlite.connect(
            self.path, isolation_level=None, timeout=self._busy_timeout, uri=self._uri
        )
        if not self.is_memory and self._mode != "ro":  # ro cannot switch the journal mode
            await self.command(raw, "PRAGMA journal_mode=WAL")  # closes its cursor: no lock held
        return raw

    async def close(self, raw: Any) -> None:
        await raw.close()

    def terminate(self, raw: Any) -> None:
        connection = raw._connection
        if connection is not None:
            connection.interrupt()  # thread-safe: stops a statement still running in the thread
        raw.stop()

    def abandon(self, raw: Any) -> None:
        # The worker thread does not exist in a forked child; never touch the sqlite handle.
        raw._running = False

    async def recover(self, raw: Any) -> None:
        """Stop what still runs in aiosqlite's thread, wait for it, roll back what is open."""
        connection = raw._conn
        connection.interrupt()  # thread-safe; the cancelled statement ends with "interrupted"

        def reset() -> None:
            if connection.in_transaction:
                connection.rollback()

        await raw._execute(reset)  # queued behind the interrupted call: runs once it is done

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
                inserted = _first_keyword(sql) in ("INSERT", "REPLACE")
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
            return ["BEGIN DEFERRED" if options.readonly else "BEGIN IMMEDIATE"]
        name = options.isolation.lower().replace(" ", "_")
        if name not in _ISOLATION:
            raise InterfaceError(
                f"unknown isolation level {options.isolation!r} for sqlite; expected one of: "
                + ", ".join(_ISOLATION)
            )
        return [_ISOLATION[name]]

    def transaction_gate(self, options: TransactionOptions) -> tuple[asyncio.Lock, float] | None:
        if self.is_memory or options.readonly or options.isolation == "deferred":
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


_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*(\w*)", re.S)


def _first_keyword(sql: str) -> str:
    """The statement's first keyword, past whitespace and comments ("WITH ..." stays WITH)."""
    match = _LEADING.match(sql)
    return match.group(1).upper() if match else ""


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
