"""PostgreSQL through asyncpg."""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg

from .._copy import BadRecord, CallbackFailed, RecordFeed, byte_sink, byte_source, copied_rows
from .._copy import quote_ident as _quote_ident
from .._exceptions import InterfaceError
from .._records import RowMapping
from .._url import DatabaseURL
from ._common import (
    close_socket,
    connect_timeout,
    connect_within,
    detach_transport,
    import_driver,
    isolation_sql,
    tls_option,
)
from ._engines import OUTCOME_UNKNOWN_STATES, detect_engine
from .base import (
    ErrorKind,
    ErrorScope,
    ExecuteResult,
    Failure,
    RawRow,
    ServerRole,
    TransactionOptions,
)

__all__ = ["PostgresBackend"]

_ISOLATION = ("read_committed", "repeatable_read", "serializable", "read_uncommitted")

# SQLSTATEs (and classes) that mean the session is gone. Class 08 is "connection exception".
_DISCONNECT_STATES = frozenset({"57P01", "57P02", "57P03", "57P05", "25P03", "53300"})
_CONFLICT_STATES = frozenset({"40001", "40P01"})
# read_only_sql_transaction: a write on a standby or in a read-only session (routing re-runs
# it on the primary; failover starts a rediscovery of roles)
_READ_ONLY_STATE = "25006"
_CLASS_KIND = {
    "08": ErrorKind.DISCONNECT,
    "22": ErrorKind.DATA,
    "23": ErrorKind.INTEGRITY,
    "25": ErrorKind.ABORTED,
    "40": ErrorKind.ABORTED,
    "42": ErrorKind.PROGRAMMING,
    "0A": ErrorKind.PROGRAMMING,
}

_RESET_SQL = """
SELECT pg_advisory_unlock_all();
CLOSE ALL;
UNLISTEN *;
SET SESSION AUTHORIZATION DEFAULT;
RESET ROLE;
RESET ALL;
DISCARD TEMP;
DISCARD SEQUENCES;
DO $asyncdb$
DECLARE r record;
BEGIN
  FOR r IN SELECT name FROM pg_prepared_statements WHERE from_sql LOOP
    EXECUTE 'DEALLOCATE ' || quote_ident(r.name);
  END LOOP;
END
$asyncdb$;
"""


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
        # "postgresql", "cockroachdb" or "yugabytedb": read from version() at first connect
        self.engine: str | None = None

    async def connect(self) -> Any:
        kwargs = self._connect_kwargs
        where = _where(kwargs.get("host"), kwargs.get("port"))
        return await connect_within(self._open(), kwargs["timeout"], where)

    async def _open(self) -> Any:
        raw = await self._asyncpg.connect(**self._connect_kwargs)
        try:
            if self.engine is None:
                self.engine = detect_engine(await raw.fetchval("SELECT version()"), self.name)
            if self.engine != "cockroachdb":  # no pg_catalog json type to hang a codec on
                await _set_json_codecs(raw)
        except BaseException:
            raw.terminate()  # a timeout or cancellation here must not leak the socket
            raise
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

    def orphan(self, raw: Any) -> None:
        raw._aborted = True  # asyncpg then never sends Terminate nor warns about it
        close_socket(getattr(raw, "_transport", None))

    async def recover(self, raw: Any) -> None:
        raise NotImplementedError("a network connection interrupted mid-call is terminated")

    async def reset(self, raw: Any) -> Any:
        # asyncpg's own reset query, plus what it leaves: role, session authorization,
        # temp tables, sequence state, and prepared statements made with SQL PREPARE
        # (only those: DEALLOCATE ALL would break asyncpg's statement cache).
        await raw.execute(_RESET_SQL)
        return raw

    async def cancel(self, raw: Any) -> bool:
        # asyncpg's own timeout mechanism: when the call's waiter is cancelled, the protocol
        # sends a CancelRequest from a short-lived connection (Connection._cancel) and
        # swallows the statement's "canceling statement" error up to ReadyForQuery. Wait for
        # that (bounded; asyncpg terminates the connection if it does not come).
        if raw.is_closed():
            return False
        protocol = raw._protocol
        if not protocol._is_cancelling():
            return False  # interrupted outside a protocol call: its state is not known
        try:
            await protocol._wait_for_cancellation(self._connect_kwargs["timeout"])
        except Exception:
            return False
        return not raw.is_closed()

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

    # -- replica routing ------------------------------------------------------------------

    async def server_role(self, raw: Any) -> ServerRole:
        standby = await raw.fetchval("SELECT pg_is_in_recovery()")
        return ServerRole("replica" if standby else "primary", ready=True)

    async def write_position(self, raw: Any) -> str:
        # the insert position, not pg_current_wal_lsn(): with synchronous_commit=off the
        # latter may not cover a commit that just returned
        return str(await raw.fetchval("SELECT pg_current_wal_insert_lsn()::text"))

    async def replay_position(self, raw: Any) -> str | None:
        value = await raw.fetchval("SELECT pg_last_wal_replay_lsn()::text")
        return None if value is None else str(value)

    def position_covers(self, replayed: str, wanted: str) -> bool:
        return parse_lsn(replayed) >= parse_lsn(wanted)

    async def replica_lag(self, raw: Any) -> float | None:
        # 0 when everything received is replayed, else the age of the last replayed commit
        value = await raw.fetchval(
            "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
            "ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END::float8"
        )
        return None if value is None else max(0.0, float(value))

    def readonly_session_sql(self) -> list[str]:
        return ["SET default_transaction_read_only = on"]

    def reported_role(self, raw: Any) -> str | None:
        """The role the server last reported on this connection, without I/O: PostgreSQL
        14+ reports `in_hot_standby` when it changes (after the next statement once a
        standby is promoted). None when the server does not report it."""
        value = getattr(raw.get_settings(), "in_hot_standby", None)
        if value is None:
            return None
        return "replica" if value == "on" else "primary"

    async def wait_for_position(self, raw: Any, wanted: str, timeout: float) -> bool:  # noqa: ASYNC109
        # PostgreSQL 15 has no server-side wait for a replay position: ask until it is there
        deadline = asyncio.get_running_loop().time() + timeout
        pause = 0.002
        while True:
            replayed = await self.replay_position(raw)
            if replayed is not None and self.position_covers(replayed, wanted):
                return True
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    def transaction_gate(self, options: TransactionOptions) -> None:
        return None  # the server orders concurrent writers itself

    def write_gate(self, options: TransactionOptions) -> None:
        return None

    def classify(self, exc: BaseException, raw: Any) -> Failure | None:
        if isinstance(exc, BadRecord):  # COPY sent CopyFail: the server failed the statement
            return Failure(ErrorKind.DATA, ErrorScope.SAVEPOINT)
        if isinstance(exc, CallbackFailed):
            return None  # the caller's own code failed, not the database
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

    # -- COPY and LISTEN (PostgreSQL only: asyncdb checks for these methods) ---------------

    async def copy_records_to_table(
        self,
        raw: Any,
        table: str,
        *,
        records: Any,
        columns: list[str] | None,
        schema_name: str | None,
        where: str | None,
    ) -> int:
        """Binary COPY of the caller's records; return the number of rows copied."""
        width = len(columns) if columns else await self._width(raw, table, schema_name)
        feed = RecordFeed(records, width)
        try:
            status = await raw.copy_records_to_table(
                table, records=feed.rows(), columns=columns, schema_name=schema_name, where=where
            )
        except (CallbackFailed, BadRecord, self._asyncpg.PostgresError):
            raise
        except (TypeError, ValueError, OverflowError, LookupError) as exc:
            # asyncpg's encoder refused a value: of the record it pulled last.
            raise BadRecord(f"record {feed.count}: {exc}") from exc
        return copied_rows(status)

    async def _width(self, raw: Any, table: str, schema_name: str | None) -> int:
        """How many columns a record must have: asyncpg sends only as many values as the
        table has columns and silently drops any extra one, so a record too long would lose
        data without an error. Same statement as asyncpg's own (a statement-cache hit)."""
        target = _quote_ident(table)
        if schema_name:
            target = f"{_quote_ident(schema_name)}.{target}"
        statement = await raw._prepare(f"SELECT * FROM {target} LIMIT 1", use_cache=True)
        return len(statement.get_attributes())

    async def copy_to_table(
        self,
        raw: Any,
        table: str,
        *,
        source: Any,
        columns: list[str] | None,
        schema_name: str | None,
        options: Mapping[str, Any],
    ) -> int:
        """COPY FROM STDIN with bytes read from `source`; return the number of rows copied."""
        status = await raw.copy_to_table(
            table, source=byte_source(source), columns=columns, schema_name=schema_name, **options
        )
        return copied_rows(status)

    async def copy_from_query(
        self, raw: Any, sql: str, args: Sequence[Any], *, output: Any, options: Mapping[str, Any]
    ) -> int:
        """COPY (query) TO STDOUT into `output`; return the number of rows copied."""
        sink = byte_sink(output)
        try:
            status = await raw.copy_from_query(sql, *args, output=sink, **options)
        except CallbackFailed:
            # asyncpg stops reading when the output fails mid-COPY and the connection then
            # hangs on the rest of the data: it cannot be used again.
            raw.terminate()
            raise
        return copied_rows(status)

    async def listen(
        self,
        raw: Any,
        channels: Sequence[str],
        on_notification: Callable[[str, str, int], None],
        on_lost: Callable[[Any], None],
    ) -> None:
        """LISTEN on `channels` (exact names, quoted); call `on_notification(channel,
        payload, pid)` for each notification and `on_lost(raw)` when the connection ends."""
        raw.add_termination_listener(on_lost)

        def notified(_raw: Any, pid: int, channel: str, payload: str) -> None:
            on_notification(channel, payload, pid)

        for channel in channels:
            await raw.add_listener(channel, notified)


def _state_kind(state: str) -> ErrorKind:
    if state in OUTCOME_UNKNOWN_STATES:
        return ErrorKind.OUTCOME_UNKNOWN
    if state == _READ_ONLY_STATE:
        return ErrorKind.READ_ONLY
    if state in _DISCONNECT_STATES:
        return ErrorKind.DISCONNECT
    if state in _CONFLICT_STATES:
        return ErrorKind.CONFLICT
    return _CLASS_KIND.get(state[:2], ErrorKind.OPERATIONAL)


def _state_scope(state: str) -> ErrorScope:
    # Any error inside a PostgreSQL transaction aborts the innermost level (the transaction or
    # the savepoint); disconnects and conflicts lose the whole transaction.
    kind = _state_kind(state)
    if kind in (
        ErrorKind.DISCONNECT,
        ErrorKind.CONFLICT,
        ErrorKind.READ_ONLY,
        ErrorKind.OUTCOME_UNKNOWN,
    ):
        return ErrorScope.TRANSACTION
    return ErrorScope.SAVEPOINT


def parse_lsn(text: str) -> int:
    """A PostgreSQL LSN (`16/B374D848`) as a number; ValueError if it is not one."""
    high, sep, low = text.partition("/")
    if not sep or not (0 < len(high) <= 8 and 0 < len(low) <= 8):
        raise ValueError(f"not a PostgreSQL WAL position: {text!r}")
    try:
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise ValueError(f"not a PostgreSQL WAL position: {text!r}") from None


def _connect_kwargs(url: DatabaseURL, options: dict[str, Any]) -> dict[str, Any]:
    hosts = url.hosts
    options.pop("host", None), options.pop("unix_sock", None)  # read through url.hosts
    kwargs: dict[str, Any] = {
        "host": [h for h, _ in hosts] if len(hosts) > 1 else url.hostname,
        "port": [p or 5432 for _, p in hosts] if len(hosts) > 1 else url.port,
        "user": url.username,
        "password": url.password,
        "database": url.database or None,
    }
    if "ssl" in options and "sslmode" in options:
        raise InterfaceError("give either ssl or sslmode, not both")
    mode = options.pop("ssl", options.pop("sslmode", None))
    cafile = options.pop("sslrootcert", None) or options.pop("ssl_ca", None)
    if mode is not None or cafile is not None:
        ssl = tls_option(mode, cafile, "postgresql")
        kwargs["ssl"] = False if ssl is None else ssl
    if "statement_cache_size" in options:
        kwargs["statement_cache_size"] = int(options.pop("statement_cache_size"))
    if "command_timeout" in options:
        kwargs["command_timeout"] = float(options.pop("command_timeout"))
    if "target_session_attrs" in options:
        kwargs["target_session_attrs"] = options.pop("target_session_attrs")
    settings = dict(options.pop("server_settings", None) or {})
    if "application_name" in options:
        settings["application_name"] = options.pop("application_name")
    if "options" in options:
        settings.update(_libpq_options(options.pop("options")))
    if settings:
        kwargs["server_settings"] = settings
    kwargs["timeout"] = connect_timeout(options)
    return {k: v for k, v in kwargs.items() if v is not None}


def _libpq_options(text: str) -> dict[str, str]:
    """Parse libpq's `options` (`-c search_path=x -c statement_timeout=5s`, or `--name=value`)
    into server settings, which asyncpg sends in the startup packet."""
    bad = f"cannot read the options parameter {text!r}: expected -c name=value"
    try:
        words = shlex.split(text)
    except ValueError:
        raise InterfaceError(bad) from None
    settings: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            word, i = words[i + 1], i + 2
        elif word.startswith("-c"):
            word, i = word[2:], i + 1
        elif word.startswith("--"):
            word, i = word[2:], i + 1
        else:
            raise InterfaceError(bad)
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise InterfaceError(bad)
        settings[name.replace("-", "_")] = value
    return settings


def _where(host: Any, port: Any) -> str:
    hosts = host if isinstance(host, list) else [host or "localhost"]
    ports = port if isinstance(port, list) else [port or 5432] * len(hosts)
    return ",".join(
        h if h.startswith("/") else f"{h}:{p}" for h, p in zip(hosts, ports, strict=False)
    )


async def _set_json_codecs(raw: Any) -> None:
    def encode_json(value: Any) -> bytes:
        # a str is JSON text already (what SQLAlchemy's JSON type sends); anything else is
        # a value to serialize, so plain SQL can pass dicts and lists as it gets them back
        return (value if isinstance(value, str) else json.dumps(value)).encode()

    def decode_json(value: bytes) -> Any:
        return json.loads(value.decode())

    def encode_jsonb(value: Any) -> bytes:
        return b"\x01" + encode_json(value)

    def decode_jsonb(value: bytes) -> Any:
        return json.loads(value[1:].decode())

    await raw.set_type_codec(
        "json", encoder=encode_json, decoder=decode_json, schema="pg_catalog", format="binary"
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
        def _mapping(self) -> Mapping[str, Any]:
            # asyncpg's own items() gives each name's *last* value when names repeat
            return RowMapping(tuple(self.keys()), tuple(self.values()))

    PostgresRecord.__name__ = PostgresRecord.__qualname__ = "Record"
    return PostgresRecord
