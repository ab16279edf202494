"""MySQL and MariaDB through aiomysql (PyMySQL's protocol and exceptions)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from sqlalchemy.dialects.mysql import aiomysql as sa_aiomysql

from .._url import DatabaseURL
from ._common import detach_transport, import_driver, isolation_sql, parse_bool
from .base import (
    ErrorKind,
    ErrorScope,
    ExecuteResult,
    Failure,
    RawRow,
    TransactionOptions,
)

__all__ = ["MySQLBackend"]

_ISOLATION = ("read_committed", "repeatable_read", "serializable", "read_uncommitted")

# Client and server codes after which the connection cannot be used (SQLAlchemy's list plus
# 1053 server shutdown): server gone, lost during query, out of sync, killed, idle timeout;
# and 2002/2003, cannot connect at all.
_DISCONNECT_CODES = frozenset({1053, 1927, 2002, 2003, 2006, 2013, 2014, 2045, 2055, 4031})
# 1213 deadlock: InnoDB rolled back the whole transaction. 1205 lock wait timeout undoes only
# the statement unless innodb_rollback_on_timeout is on; we cannot see that setting for free,
# so it is treated as losing the transaction too (the safe side).
_CONFLICT_CODES = frozenset({1213, 1205})
_DISCONNECT_TEXTS = ("not connected", "cancelled during execution", "already closed", "(0, '')")


class MySQLBackend:
    """aiomysql connections in autocommit mode; transactions use START TRANSACTION."""

    name: ClassVar[str] = "mysql"
    record_class = None
    is_memory = False
    can_recover: ClassVar[bool] = False

    def __init__(self, url: DatabaseURL, options: dict[str, Any]) -> None:
        self._aiomysql = import_driver("aiomysql", "mysql")
        self._err = import_driver("pymysql.err", "mysql")
        self.url = url
        self.dialect = sa_aiomysql.dialect()
        self._connect_kwargs = _connect_kwargs(url, options)
        self._cursor, self._stream_cursor = _quiet_cursors(self._aiomysql)

    async def connect(self) -> Any:
        return await self._aiomysql.connect(**self._connect_kwargs)

    async def close(self, raw: Any) -> None:
        await raw.ensure_closed()

    def terminate(self, raw: Any) -> None:
        raw.close()

    def abandon(self, raw: Any) -> None:
        writer = raw._writer
        if writer is not None:
            detach_transport(writer.transport)

    async def recover(self, raw: Any) -> None:
        raise NotImplementedError("a network connection interrupted mid-call is terminated")

    def is_closed(self, raw: Any) -> bool:
        return bool(raw.closed)

    def in_transaction(self, raw: Any) -> bool:
        return not raw.closed and bool(raw.get_transaction_status())

    async def ping(self, raw: Any) -> None:
        await raw.ping(reconnect=False)

    async def command(self, raw: Any, sql: str) -> str | None:
        # BEGIN/COMMIT/SAVEPOINT return no rows: skip the cursor, as aiomysql's commit() does
        await raw.query(sql)
        return None

    async def execute(self, raw: Any, sql: str, args: Sequence[Any]) -> ExecuteResult:
        async with raw.cursor(self._cursor) as cursor:
            # PyMySQL %-formats only when args is not None; SQLAlchemy doubled every literal %.
            await cursor.execute(sql, tuple(args))
            # insert_id of this statement's OK packet: 0 unless it generated an id.
            lastrowid = cursor.lastrowid or None
            rowcount = cursor.rowcount if cursor.rowcount >= 0 else None
            row = await cursor.fetchone() if cursor.description else None
            return ExecuteResult(rowcount, lastrowid, row[0] if row else None)

    async def execute_many(self, raw: Any, sql: str, args: Sequence[Sequence[Any]]) -> None:
        async with raw.cursor(self._cursor) as cursor:
            await cursor.executemany(sql, [tuple(a) for a in args])

    async def fetch(
        self, raw: Any, sql: str, args: Sequence[Any]
    ) -> tuple[list[str], list[RawRow]]:
        async with raw.cursor(self._cursor) as cursor:
            await cursor.execute(sql, tuple(args))
            rows = await cursor.fetchall()
            return _columns(cursor), rows

    async def stream(
        self, raw: Any, sql: str, args: Sequence[Any], batch: int
    ) -> AsyncIterator[tuple[list[str], list[RawRow]]]:
        # An unbuffered cursor: rows are read off the socket as they are asked for.
        cursor = await raw.cursor(self._stream_cursor)
        try:
            await cursor.execute(sql, tuple(args))
            columns = _columns(cursor)
            while rows := await cursor.fetchmany(batch):
                yield columns, list(rows)
        finally:
            if not raw.closed:  # closing reads the rest of the result off a live line only
                await cursor.close()

    def begin_sql(self, options: TransactionOptions) -> list[str]:
        statements = []
        if options.isolation:
            level = isolation_sql(options.isolation, _ISOLATION, self.name)
            statements.append("SET TRANSACTION ISOLATION LEVEL " + level)
        statements.append(
            "START TRANSACTION READ ONLY" if options.readonly else "START TRANSACTION"
        )
        return statements

    def transaction_gate(self, options: TransactionOptions) -> None:
        return None  # the server orders concurrent writers itself

    def classify(self, exc: BaseException, raw: Any) -> Failure | None:
        err = self._err
        if isinstance(exc, OSError):
            return Failure(ErrorKind.DISCONNECT, ErrorScope.TRANSACTION)
        if not isinstance(exc, err.MySQLError):
            return None
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        sqlstate = getattr(exc, "sqlstate", None)
        text = str(exc).lower()
        if code in _DISCONNECT_CODES or any(t in text for t in _DISCONNECT_TEXTS):
            return Failure(ErrorKind.DISCONNECT, ErrorScope.TRANSACTION, sqlstate, code)
        if isinstance(exc, err.InternalError) and "packet sequence" in text:
            return Failure(ErrorKind.DISCONNECT, ErrorScope.TRANSACTION, sqlstate, code)
        if code in _CONFLICT_CODES:
            return Failure(ErrorKind.CONFLICT, ErrorScope.TRANSACTION, sqlstate, code)
        return Failure(_kind(exc, err), ErrorScope.STATEMENT, sqlstate, code)


def _kind(exc: BaseException, err: Any) -> ErrorKind:
    if isinstance(exc, err.IntegrityError):
        return ErrorKind.INTEGRITY
    if isinstance(exc, err.ProgrammingError):
        return ErrorKind.PROGRAMMING
    if isinstance(exc, err.DataError):
        return ErrorKind.DATA
    if isinstance(exc, err.InterfaceError):
        return ErrorKind.INTERFACE
    return ErrorKind.OPERATIONAL


def _quiet_cursors(aiomysql: Any) -> tuple[type, type]:
    """Cursors that skip aiomysql's SHOW WARNINGS round trip after a statement with notes
    (e.g. DROP TABLE IF EXISTS): one more query and a Python warning per such statement."""

    async def _show_warnings(self: Any, conn: Any) -> None:
        return None

    cursor = type("Cursor", (aiomysql.Cursor,), {"_show_warnings": _show_warnings})
    stream = type("SSCursor", (aiomysql.SSCursor,), {"_show_warnings": _show_warnings})
    return cursor, stream


def _columns(cursor: Any) -> list[str]:
    return [d[0] for d in cursor.description] if cursor.description else []


def _connect_kwargs(url: DatabaseURL, options: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": url.hostname or "localhost",
        "port": url.port or 3306,
        "user": url.username,
        "password": url.password or "",
        "db": url.database or None,
        "autocommit": True,
        "charset": options.pop("charset", "utf8mb4"),
        "connect_timeout": float(options.pop("connect_timeout", 10)),
    }
    if "unix_socket" in options:
        kwargs["unix_socket"] = options.pop("unix_socket")
    if "ssl" in options:
        ssl = options.pop("ssl")
        if not isinstance(ssl, str | bool) or parse_bool(ssl):
            import ssl as ssl_module

            kwargs["ssl"] = (
                ssl if not isinstance(ssl, str | bool) else ssl_module.create_default_context()
            )
    return {k: v for k, v in kwargs.items() if v is not None}
