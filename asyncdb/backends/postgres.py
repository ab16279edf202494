"""PostgreSQL through asyncpg."""

from __future__ import annotations

import json
import ssl as ssl_module
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg

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

__all__ = ["PostgresBackend"]

_ISOLATION = ("read_committed", "repeatable_read", "serializable", "read_uncommitted")

# SQLSTATEs (and classes) that mean the session is gone. Class 08 is "connection exception".
_DISCONNECT_STATES = frozenset({"57P01", "57P02", "57P03", "57P05", "25P03", "53300"})
_CONFLICT_STATES = frozenset({"40001", "40P01"})
_CLASS_KIND = {
    "08": ErrorKind.DISCONNECT,
    "22": ErrorKind.DATA,
    "23": ErrorKind.INTEGRITY,
    "25": ErrorKind.ABORTED,
    "40": ErrorKind.ABORTED,
    "42": ErrorKind.PROGRAMMING,
    "0A": ErrorKind.PROGRAMMING,
}


class PostgresBackend:
    """asyncpg connections; JSON/JSONB decoded as SQLAlchemy's asyncpg dialect does."""

    name: ClassVar[str] = "postgresql"
    is_memory = False
    can_recover: ClassVar[bool] = False

    def __init__(self, url: DatabaseURL, options: dict[str, Any]) -> None:
        self._asyncpg = import_driver("asyncpg", "postgresql")
        self.url = url
        self.dialect = sa_asyncpg.dialect()  # type: ignore[no-untyped-call]
        self.record_class = _record_class(self._asyncpg)
        self._connect_kwargs = _connect_kwargs(url, options)

    async def connect(self) -> Any:
        raw = await self._asyncpg.connect(**self._connect_kwargs)
        await _set_json_codecs(raw)
        return raw

    async def close(self, raw: Any) -> None:
        await raw.close(timeout=5)

    def terminate(self, raw: Any) -> None:
        raw.terminate()

    def abandon(self, raw: Any) -> None:
        # The socket and the event loop's epoll set are shared with the parent process:
        # mark the connection aborted so that nothing (not even its finalizer) sends
        # Terminate or unregisters the socket from the parent's loop.
        raw._aborted = True
        detach_transport(getattr(raw, "_transport", None))

    async def recover(self, raw: Any) -> None:
        raise NotImplementedError("a network connection interrupted mid-call is terminated")

    def is_closed(self, raw: Any) -> bool:
        return bool(raw.is_closed())

    def in_transaction(self, raw: Any) -> bool:
        return bool(raw.is_in_transaction())

    async def ping(self, raw: Any) -> None:
        await raw.execute("SELECT 1")  # simple protocol: one round trip

    async def command(self, raw: Any, sql: str) -> str | None:
        status: str = await raw.execute(sql)
        return status

    async def execute(self, raw: Any, sql: str, args: Sequence[Any]) -> ExecuteResult:
        # fetchval() drops the status tag ("UPDATE 2"); _execute is what fetchval and
        # execute() call, with the tag kept. No limit: a suspended portal has no tag.
        rows, status, _ = await raw._execute(sql, args, 0, None, return_status=True)
        tag = status.decode().rsplit(" ", 1)[-1] if status else ""
        return ExecuteResult(
            rowcount=int(tag) if tag.isdigit() else None,
            lastrowid=None,
            value=rows[0][0] if rows and len(rows[0]) else None,
        )

    async def execute_many(self, raw: Any, sql: str, args: Sequence[Sequence[Any]]) -> None:
        await raw.executemany(sql, args)

    async def fetch(
        self, raw: Any, sql: str, args: Sequence[Any]
    ) -> tuple[list[str], list[RawRow]]:
        # No explicit prepare(): it would create a named statement, which breaks behind
        # PgBouncer in transaction mode when statement_cache_size=0.
        rows = await raw.fetch(sql, *args, record_class=self.record_class)
        return (list(rows[0].keys()) if rows else []), rows

    async def stream(
        self, raw: Any, sql: str, args: Sequence[Any], batch: int
    ) -> AsyncIterator[tuple[list[str], list[RawRow]]]:
        if not raw.is_in_transaction():
            # asyncpg cursors need a transaction; a read-only one keeps the snapshot stable.
            async with raw.transaction(readonly=True):
                async for item in self._stream(raw, sql, args, batch):
                    yield item
        else:
            async for item in self._stream(raw, sql, args, batch):
                yield item

    async def _stream(
        self, raw: Any, sql: str, args: Sequence[Any], batch: int
    ) -> AsyncIterator[tuple[list[str], list[RawRow]]]:
        # an unnamed statement unless the statement cache is on
        cursor = await raw.cursor(sql, *args, record_class=self.record_class)
        while rows := await cursor.fetch(batch):
            yield list(rows[0].keys()), rows

    def begin_sql(self, options: TransactionOptions) -> list[str]:
        sql = "BEGIN"
        if options.isolation:
            sql += " ISOLATION LEVEL " + isolation_sql(options.isolation, _ISOLATION, self.name)
        if options.readonly:
            sql += " READ ONLY"
        return [sql]

    def transaction_gate(self, options: TransactionOptions) -> None:
        return None  # the server orders concurrent writers itself

    def classify(self, exc: BaseException, raw: Any) -> Failure | None:
        asyncpg = self._asyncpg
        if isinstance(exc, asyncpg.PostgresError):
            state = getattr(exc, "sqlstate", None) or ""
            if isinstance(exc.__cause__, TypeError | ValueError | OverflowError):
                # asyncpg could not encode an argument: raised before Bind, so the server
                # saw nothing and the transaction is intact.
                return Failure(ErrorKind.DATA, ErrorScope.STATEMENT, sqlstate=state or None)
            return Failure(_state_kind(state), _state_scope(state), sqlstate=state or None)
        closed = raw is not None and raw.is_closed()
        if isinstance(exc, asyncpg.InternalClientError | OSError) or closed:
            # InternalClientError after a server-side kill ("cannot switch to state"):
            # the protocol state is unknown, so the connection cannot be trusted.
            return Failure(ErrorKind.DISCONNECT, ErrorScope.TRANSACTION)
        if isinstance(exc, asyncpg.InterfaceError):
            if "connection is closed" in str(exc):
                return Failure(ErrorKind.DISCONNECT, ErrorScope.TRANSACTION)
            return Failure(ErrorKind.INTERFACE, ErrorScope.STATEMENT)
        return None


def _state_kind(state: str) -> ErrorKind:
    if state in _DISCONNECT_STATES:
        return ErrorKind.DISCONNECT
    if state in _CONFLICT_STATES:
        return ErrorKind.CONFLICT
    return _CLASS_KIND.get(state[:2], ErrorKind.OPERATIONAL)


def _state_scope(state: str) -> ErrorScope:
    # Any error inside a PostgreSQL transaction aborts the innermost level (the transaction or
    # the savepoint); disconnects and conflicts lose the whole transaction.
    kind = _state_kind(state)
    if kind is ErrorKind.DISCONNECT or kind is ErrorKind.CONFLICT:
        return ErrorScope.TRANSACTION
    return ErrorScope.SAVEPOINT


def _connect_kwargs(url: DatabaseURL, options: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": url.hostname,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database or None,
    }
    if "ssl" in options:
        ssl = options.pop("ssl")
        kwargs["ssl"] = ssl if isinstance(ssl, ssl_module.SSLContext | str) else parse_bool(ssl)
    if "statement_cache_size" in options:
        kwargs["statement_cache_size"] = int(options.pop("statement_cache_size"))
    if "command_timeout" in options:
        kwargs["command_timeout"] = float(options.pop("command_timeout"))
    if "server_settings" in options:
        kwargs["server_settings"] = options.pop("server_settings")
    kwargs["timeout"] = float(options.pop("connect_timeout", 10))
    return {k: v for k, v in kwargs.items() if v is not None}


async def _set_json_codecs(raw: Any) -> None:
    def decode_json(value: bytes) -> Any:
        return json.loads(value.decode())

    def encode_jsonb(value: str) -> bytes:
        return b"\x01" + value.encode()

    def decode_jsonb(value: bytes) -> Any:
        return json.loads(value[1:].decode())

    await raw.set_type_codec(
        "json", encoder=str.encode, decoder=decode_json, schema="pg_catalog", format="binary"
    )
    await raw.set_type_codec(
        "jsonb", encoder=encode_jsonb, decoder=decode_jsonb, schema="pg_catalog", format="binary"
    )


def _record_class(asyncpg: Any) -> type:
    """asyncpg's own record, built in C by the driver, with asyncdb's row API on top: rows of
    plain SQL queries cost nothing more than the driver's."""

    class PostgresRecord(asyncpg.Record):  # type: ignore[misc]
        __slots__ = ()

        def __getattr__(self, name: str) -> Any:
            try:
                return self[name]
            except KeyError:
                raise AttributeError(f"row has no column named {name!r}") from None

        def __iter__(self) -> Any:
            return iter(self.keys())  # a Mapping, like asyncdb.Record

        @property
        def _mapping(self) -> dict[str, Any]:
            return dict(self.items())

    PostgresRecord.__name__ = PostgresRecord.__qualname__ = "Record"
    return PostgresRecord
