"""MySQL and MariaDB through aiomysql (PyMySQL's protocol and exceptions)."""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy.dialects.mysql import aiomysql as sa_aiomysql

from .._url import DatabaseURL
from ._common import (
    close_socket,
    connect_timeout,
    connect_within,
    detach_transport,
    import_driver,
    isolation_sql,
    parse_bool,
    tls_option,
)
from .base import (
    ErrorKind,
    ErrorScope,
    ExecuteResult,
    Failure,
    RawRow,
    TransactionOptions,
)

__all__ = ["MySQLBackend"]

_QUERY_INTERRUPTED = 1317  # ER_QUERY_INTERRUPTED: what KILL QUERY makes the statement end with
_ISOLATION = ("read_committed", "repeatable_read", "serializable", "read_uncommitted")

# Client and server codes after which the session is gone (the server closed it, or the
# protocol state is unknown), so the connection must not go back to the pool:
_DISCONNECT_CODES = frozenset(
    {
        1040,  # ER_CON_COUNT_ERROR: too many connections, refused at the handshake
        1043,  # ER_HANDSHAKE_ERROR: bad handshake, the server hangs up
        1053,  # ER_SERVER_SHUTDOWN: server shutdown in progress
        1077,  # ER_NORMAL_SHUTDOWN
        1078,  # ER_GOT_SIGNAL: server got a signal, aborting
        1079,  # ER_SHUTDOWN_COMPLETE
        1080,  # ER_FORCING_CLOSE: forcing close of this thread
        1081,  # ER_IPSOCK_ERROR: the server cannot create its socket
        1152,  # ER_ABORTING_CONNECTION: aborted connection
        1153,  # ER_NET_PACKET_TOO_LARGE: the server drops the session after sending it
        1154,  # ER_NET_READ_ERROR_FROM_PIPE
        1155,  # ER_NET_FCNTL_ERROR
        1156,  # ER_NET_PACKETS_OUT_OF_ORDER
        1157,  # ER_NET_UNCOMPRESS_ERROR
        1158,  # ER_NET_READ_ERROR
        1159,  # ER_NET_READ_INTERRUPTED: net_read_timeout
        1160,  # ER_NET_ERROR_ON_WRITE
        1161,  # ER_NET_WRITE_INTERRUPTED: net_write_timeout
        1184,  # ER_NEW_ABORTING_CONNECTION: aborted (e.g. init_connect failed)
        1927,  # ER_CONNECTION_KILLED (MariaDB): KILL CONNECTION / QUERY on this session
        2002,  # CR_CONNECTION_ERROR: cannot connect through the socket
        2003,  # CR_CONN_HOST_ERROR: cannot connect to the host
        2006,  # CR_SERVER_GONE_ERROR: server has gone away
        2013,  # CR_SERVER_LOST: lost connection during query
        2014,  # CR_COMMANDS_OUT_OF_SYNC: the protocol state is unknown
        2045,  # CR_NAMEDPIPE_CONNECTION (Windows pipes)
        2055,  # CR_SERVER_LOST_EXTENDED: lost connection at a given stage
        3032,  # ER_SERVER_OFFLINE_MODE (MySQL): the server drops non-admin sessions
        3169,  # ER_SESSION_WAS_KILLED (MySQL)
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8): wait_timeout expired
    }
)
# 1213 deadlock: InnoDB rolled back the whole transaction. 1205 lock wait timeout undoes only
# the statement unless innodb_rollback_on_timeout is on; we cannot see that setting for free,
# so it is treated as losing the transaction too (the safe side).
_CONFLICT_CODES = frozenset({1213, 1205})
_DISCONNECT_TEXTS = ("not connected", "cancelled during execution", "already closed", "(0, '')")
_FIELD_TYPE_JSON = 245  # MySQL's JSON column type; MariaDB reports LONGTEXT instead
# None, bool, int, float, Decimal, str, bytes, date/datetime, time, timedelta: PyMySQL's own.
_SCALARS = (
    type(None),
    bool,
    int,
    float,
    Decimal,
    str,
    bytes,
    datetime.date,
    datetime.time,
    datetime.timedelta,
)
_COM_RESET_CONNECTION = 0x1F


class MySQLBackend:
    """aiomysql connections in autocommit mode; transactions use START TRANSACTION."""

    name: ClassVar[str] = "mysql"
    record_class = None
    is_memory = False
    can_recover: ClassVar[bool] = False

    def __init__(self, url: DatabaseURL, options: dict[str, Any]) -> None:
        self._aiomysql = import_driver("aiomysql", "mysql")
        self._err = import_driver("pymysql.err", "mysql")
        self._client = import_driver("pymysql.constants.CLIENT", "mysql")
        self.url = url
        self.dialect = sa_aiomysql.dialect()
        self._multi_statements = parse_bool(options.pop("multi_statements", False))
        self._connect_timeout = connect_timeout(options)
        self._connect_kwargs = _connect_kwargs(url, options)
        self._connect_kwargs["connect_timeout"] = self._connect_timeout
        self._cursor, self._stream_cursor = _quiet_cursors(self._aiomysql)

    async def connect(self) -> Any:
        kwargs = self._connect_kwargs
        where = kwargs.get("unix_socket") or f"{kwargs['host']}:{kwargs['port']}"
        raw = await connect_within(self._open(), self._connect_timeout, where)
        # JSON columns come back decoded, as on PostgreSQL. A copy: aiomysql's default is
        # PyMySQL's module-level dict, shared with every other user of PyMySQL.
        raw.decoders = {**raw.decoders, _FIELD_TYPE_JSON: json.loads}
        return raw

    @staticmethod
    def adapt_parameter(value: Any) -> Any:
        """Refuse what PyMySQL would store as its str() (an `object()`, a list...)."""
        if isinstance(value, _SCALARS):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"MySQL cannot store the float {value!r}")
            if isinstance(value, datetime.datetime | datetime.time) and value.tzinfo:
                # PyMySQL would drop the offset and store the wall clock: another instant
                raise ValueError(
                    "MySQL DATETIME has no time zone; pass a naive value (e.g. in UTC)"
                )
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        if isinstance(value, uuid.UUID):
            return str(value)  # CHAR(36) text; a Core Uuid column stores its own form
        raise TypeError(
            f"a {type(value).__name__} cannot be sent to MySQL"
            + (
                " (pass json.dumps(value), or use a JSON column in Core)"
                if isinstance(value, dict | list | tuple)
                else ""
            )
        )

    async def _open(self) -> Any:
        """aiomysql.connect() always asks for CLIENT.MULTI_STATEMENTS, so that an injection
        reaching a query string could append statements (`SELECT 1; DROP TABLE t`): build the
        connection ourselves and clear the flag before the handshake unless asked for."""
        raw = self._aiomysql.Connection(**self._connect_kwargs)
        if not self._multi_statements:
            raw.client_flag &= ~self._client.MULTI_STATEMENTS
        try:
            await raw._connect()
        except self._err.OperationalError as exc:
            raw.close()
            cause = exc.__cause__
            if isinstance(cause, OSError) and str(cause) and len(exc.args) == 2:
                # aiomysql says only "Can't connect": keep why (refused, certificate...)
                raise type(exc)(exc.args[0], f"{exc.args[1]}: {cause}") from cause
            raise
        except BaseException:
            raw.close()  # aiomysql closes its socket on errors but not on cancellation
            raise
        return raw

    async def close(self, raw: Any) -> None:
        await raw.ensure_closed()

    def terminate(self, raw: Any) -> None:
        raw.close()

    def abandon(self, raw: Any) -> None:
        writer = raw._writer
        if writer is not None:
            detach_transport(writer.transport)

    def orphan(self, raw: Any) -> None:
        writer = raw._writer
        if writer is not None:
            close_socket(writer.transport)
        raw._writer = raw._reader = None  # closed, as aiomysql's own close() leaves it

    async def recover(self, raw: Any) -> None:
        raise NotImplementedError("a network connection interrupted mid-call is terminated")

    async def reset(self, raw: Any) -> Any:
        # COM_RESET_CONNECTION: user variables, session variables, named locks, temp tables
        # and prepared statements go; the login and charset stay. PyMySQL has no call for it.
        await raw._execute_command(_COM_RESET_CONNECTION, "")
        await raw._read_ok_packet()
        await raw.autocommit(True)  # back to the server default: make sure it is still on
        return raw

    async def cancel(self, raw: Any) -> bool:
        # KILL QUERY from a short-lived second connection (same login, bounded by the connect
        # timeout): the connection itself is busy waiting for the statement's answer. Sent
        # even when aiomysql has already closed the connection (it closes it when a read is
        # cancelled): the server does not notice a closed socket while a statement runs.
        ids = getattr(raw, "server_thread_id", None)
        thread_id = ids[0] if ids else None
        if thread_id is None:
            return False
        # 1: the command was sent and no packet of its answer was read yet, so the answer
        # (error 1317, or the result if the statement won the race) can still be read whole.
        in_step = raw._next_seq_id == 1 and not raw.closed
        try:
            async with asyncio.timeout(self._connect_timeout):
                killer = await self._open()
                try:
                    await killer.query(f"KILL QUERY {int(thread_id)}")
                finally:
                    killer.close()
        except Exception:
            return False
        if not in_step:
            return False
        try:
            async with asyncio.timeout(self._connect_timeout):
                await raw._read_query_result()
        except self._err.OperationalError as exc:
            return bool(exc.args and exc.args[0] == _QUERY_INTERRUPTED) and not raw.closed
        except Exception:
            return False
        return not raw.closed

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
        result = await _query(raw, sql, args)
        # insert_id of this statement's OK packet: 0 unless it generated an id.
        lastrowid = result.insert_id or None
        rowcount = result.affected_rows if result.affected_rows >= 0 else None
        row = result.rows[0] if result.description and result.rows else None
        return ExecuteResult(rowcount, lastrowid, row[0] if row else None)

    async def execute_many(self, raw: Any, sql: str, args: Sequence[Sequence[Any]]) -> None:
        async with raw.cursor(self._cursor) as cursor:
            await cursor.executemany(sql, [tuple(a) for a in args])

    async def fetch(
        self, raw: Any, sql: str, args: Sequence[Any]
    ) -> tuple[list[str], list[RawRow]]:
        result = await _query(raw, sql, args)
        columns = [d[0] for d in result.description] if result.description else []
        return columns, result.rows or []

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
            result = cursor._result
            if raw.closed:
                pass
            elif result is not None and result.unbuffered_active:
                # Left early (break): closing the cursor would read every remaining row off
                # the wire first. Drop the line instead; the pool opens a fresh connection.
                raw.close()
            else:
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

    def write_gate(self, options: TransactionOptions) -> None:
        return None

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

    def _escape_args(self: Any, args: Any, conn: Any) -> Any:
        return tuple(_escape(arg, conn) for arg in args)

    body = {"_show_warnings": _show_warnings, "_escape_args": _escape_args}
    cursor = type("Cursor", (aiomysql.Cursor,), body)
    stream = type("SSCursor", (aiomysql.SSCursor,), body)
    return cursor, stream


async def _query(raw: Any, sql: str, args: Sequence[Any]) -> Any:
    """Run one statement on the connection's own query path and return its buffered result:
    what a cursor's execute() does, without building, draining and closing a cursor per
    statement (a dozen Python calls each time; the warnings query it may send is skipped
    anyway, see _quiet_cursors)."""
    # PyMySQL %-formats only when args is not None; SQLAlchemy doubled every literal %, and
    # raw SQL reaches here with %% too, so the formatting always runs.
    await raw.query(sql % tuple(_escape(arg, raw) for arg in args))
    result = raw._result
    while raw._result is not None and raw._result.has_next:  # multi_statements: drain now,
        await raw.next_result()  # as closing a cursor would, so the session state is current
    return result


def _escape(value: Any, conn: Any) -> str:
    """One SQL literal. aiomysql's own escape() calls a PyMySQL helper that PyMySQL 1.1+
    replaced by a string, so bytes are escaped here; the rest is PyMySQL's encoders."""
    if isinstance(value, bytes):
        return "_binary X'" + value.hex() + "'"
    literal: str = conn.escape(value)
    return literal


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
        "init_command": options.pop("init_command", None),
    }
    options.pop("host", None)  # read through url.hostname
    sockets = [options.pop("unix_socket", None), options.pop("unix_sock", None)]
    if url.hostname and url.hostname.startswith("/"):
        sockets.append(url.hostname)  # ?host=/run/mysqld/mysqld.sock, libpq style
    socket = next((s for s in sockets if s), None)
    if socket is not None:
        kwargs["unix_socket"] = socket
    cafile = options.pop("ssl_ca", None) or options.pop("sslrootcert", None)
    if "ssl" in options or cafile is not None:
        kwargs["ssl"] = tls_option(options.pop("ssl", None), cafile, "mysql")
    return {k: v for k, v in kwargs.items() if v is not None}
