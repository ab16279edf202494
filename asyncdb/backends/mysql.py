"""MySQL and MariaDB through aiomysql (PyMySQL's protocol and exceptions).

The backend is written once for the MySQL protocol; what differs between client libraries
(module names, how a connection is built and handshaken, where its socket lives, its decoder
table, its cursor classes) sits in `_open` and the few `_driver_*` methods, which asyncmy.py
overrides.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy.dialects.mysql import aiomysql as sa_aiomysql

from .._exceptions import InterfaceError
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
from ._engines import TIDB_CONFLICT_CODES, detect_engine
from .base import (
    ErrorKind,
    ErrorScope,
    ExecuteResult,
    Failure,
    RawRow,
    ServerRole,
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
_ACCESS_DENIED = 1227  # ER_SPECIFIC_ACCESS_DENIED_ERROR: a privilege is missing
_HIDDEN: dict[str, Any] = {}  # replication status the login may not see


class MySQLBackend:
    """aiomysql connections in autocommit mode; transactions use START TRANSACTION."""

    name: ClassVar[str] = "mysql"
    driver: ClassVar[str] = "aiomysql"
    record_class = None
    is_memory = False
    can_recover: ClassVar[bool] = False

    def __init__(self, url: DatabaseURL, options: dict[str, Any]) -> None:
        self._driver_load()
        self.url = url
        self._multi_statements = parse_bool(options.pop("multi_statements", False))
        self._connect_timeout = connect_timeout(options)
        self._connect_kwargs = self._driver_kwargs(_connect_kwargs(url, options))
        self._connect_kwargs["connect_timeout"] = self._connect_timeout
        self._session_sql = _session_sql(options)
        # "mysql", "mariadb" or "tidb", from the version string of the latest handshake
        self.engine = "mysql"
        # a Galera node (wsrep_on), as server_role last saw: its positions are Galera's
        self.galera = False

    # -- the driver adapter: every place where aiomysql and asyncmy differ --------------

    def _driver_load(self) -> None:
        """Import the driver; set its error module, CLIENT flags, SQLAlchemy dialect, cursors."""
        self._aiomysql = import_driver("aiomysql", "mysql")
        self._err = import_driver("pymysql.err", "mysql")
        self._client = import_driver("pymysql.constants.CLIENT", "mysql")
        self.dialect: Any = sa_aiomysql.dialect()
        self._cursor, self._stream_cursor = _quiet_cursors(self._aiomysql)

    def _driver_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Rename the neutral connect arguments to the driver's own names."""
        return kwargs

    async def _open(self) -> Any:
        """Both drivers always ask for CLIENT.MULTI_STATEMENTS, so that an injection reaching
        a query string could append statements (`SELECT 1; DROP TABLE t`): the connection is
        built by hand and the flag cleared before the handshake unless asked for."""
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

    def _driver_decode_json(self, raw: Any) -> None:
        """JSON columns come back decoded, as on PostgreSQL. A copy: aiomysql's default is
        PyMySQL's module-level dict, shared with every other user of PyMySQL."""
        raw.decoders = {**raw.decoders, _FIELD_TYPE_JSON: json.loads}

    def _driver_transport(self, raw: Any) -> Any:
        """The asyncio transport under the connection, or None once it is closed."""
        writer = raw._writer
        return writer.transport if writer is not None else None

    def _driver_forget_socket(self, raw: Any) -> None:
        """Mark the connection closed, as the driver's own close() leaves it."""
        raw._writer = raw._reader = None

    def is_closed(self, raw: Any) -> bool:
        return bool(raw.closed)

    # -- the backend protocol, written once for the MySQL protocol ----------------------

    async def connect(self) -> Any:
        kwargs = self._connect_kwargs
        where = kwargs.get("unix_socket") or f"{kwargs['host']}:{kwargs['port']}"
        raw = await connect_within(self._open_session(), self._connect_timeout, where)
        self._driver_decode_json(raw)
        self.engine = detect_engine(raw.get_server_info() or "", self.name)
        return raw

    async def _open_session(self) -> Any:
        """A connection with the session settings the URL asks for (wsrep_sync_wait)."""
        raw = await self._open()
        try:
            await self._apply_session(raw, reset=False)
        except BaseException:
            raw.close()
            raise
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

    async def close(self, raw: Any) -> None:
        await raw.ensure_closed()

    def terminate(self, raw: Any) -> None:
        raw.close()

    def abandon(self, raw: Any) -> None:
        transport = self._driver_transport(raw)
        if transport is not None:
            detach_transport(transport)

    def orphan(self, raw: Any) -> None:
        transport = self._driver_transport(raw)
        if transport is not None:
            close_socket(transport)
        self._driver_forget_socket(raw)

    async def recover(self, raw: Any) -> None:
        raise NotImplementedError("a network connection interrupted mid-call is terminated")

    async def reset(self, raw: Any) -> Any:
        # COM_RESET_CONNECTION: user variables, session variables, named locks, temp tables
        # and prepared statements go; the login and charset stay. PyMySQL has no call for it.
        await raw._execute_command(_COM_RESET_CONNECTION, "")
        await raw._read_ok_packet()
        await raw.autocommit(True)  # back to the server default: make sure it is still on
        await self._apply_session(raw, reset=True)  # the reset undid init_command's work too
        return raw

    async def cancel(self, raw: Any) -> bool:
        # KILL QUERY from a short-lived second connection (same login, bounded by the connect
        # timeout): the connection itself is busy waiting for the statement's answer. Sent
        # even when the driver has already closed the connection (it closes it when a read is
        # cancelled): the server does not notice a closed socket while a statement runs.
        ids = getattr(raw, "server_thread_id", None)
        thread_id = ids[0] if ids else None
        if thread_id is None:
            return False
        # 1: the command was sent and no packet of its answer was read yet, so the answer
        # (error 1317, or the result if the statement won the race) can still be read whole.
        in_step = raw._next_seq_id == 1 and not self.is_closed(raw)
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
            interrupted = bool(exc.args and exc.args[0] == _QUERY_INTERRUPTED)
            return interrupted and not self.is_closed(raw)
        except Exception:
            return False
        return not self.is_closed(raw)

    def in_transaction(self, raw: Any) -> bool:
        return not self.is_closed(raw) and bool(raw.get_transaction_status())

    async def ping(self, raw: Any) -> None:
        await raw.ping(reconnect=False)

    def command(self, raw: Any, sql: str) -> Coroutine[Any, Any, str | None]:
        """BEGIN/COMMIT/SAVEPOINT return no rows: skip the cursor, as aiomysql's commit()
        does. The driver's own coroutine, handed back rather than awaited in a frame of its
        own (resumed at every wait on the wire); what it returns (a row count) is no status
        tag and nobody reads it."""
        query: Coroutine[Any, Any, str | None] = raw.query(sql)  # no cast(): a call
        return query

    # execute() and fetch() run the statement on the connection's own query path and read its
    # buffered result: what a cursor's execute() does, without building, draining and closing
    # a cursor per statement (a dozen Python calls; the warnings query it may send is skipped
    # anyway, see _quiet_cursors), and in the method's own frame, not a helper's (one frame
    # less resumed at every wait on the wire). PyMySQL %-formats only when args is not None;
    # SQLAlchemy doubled every literal %, and raw SQL reaches here with %% too, so the
    # formatting always runs.

    async def execute(self, raw: Any, sql: str, args: Sequence[Any]) -> ExecuteResult:
        await raw.query(sql % tuple(_escape(arg, raw) for arg in args))
        result = raw._result
        if result.has_next:
            await _drain(raw)
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
        await raw.query(sql % tuple(_escape(arg, raw) for arg in args))
        result = raw._result
        if result.has_next:
            await _drain(raw)
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
            if self.is_closed(raw):
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
        if code in _CONFLICT_CODES or (self.engine == "tidb" and code in TIDB_CONFLICT_CODES):
            return Failure(ErrorKind.CONFLICT, ErrorScope.TRANSACTION, sqlstate, code)
        if _read_only(code, text):
            # refused before anything was done: the statement only
            return Failure(ErrorKind.READ_ONLY, ErrorScope.STATEMENT, sqlstate, code)
        return Failure(_kind(exc, err), ErrorScope.STATEMENT, sqlstate, code)

    async def _apply_session(self, raw: Any, *, reset: bool) -> None:
        """Session settings asked for in the URL, after connect and after every reset;
        after a reset also `init_command` (the driver runs it only at connect)."""
        init = self._connect_kwargs.get("init_command")
        if reset and init:
            await raw.query(init)
        for sql in self._session_sql:
            await raw.query(sql)

    # -- replication: MariaDB primary + GTID replicas, Galera clusters --------------------

    async def server_role(self, raw: Any) -> ServerRole:
        """Galera (`wsrep_on`): every synced node takes writes, so each is a primary of its
        cluster. Otherwise a server that replays a source, or is read-only, is a replica."""
        settings = await self._values(
            raw, "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('read_only', 'wsrep_on')"
        )
        self.galera = settings.get("wsrep_on", "OFF").upper() == "ON"
        if self.galera:
            status = await self._values(
                raw,
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', "
                "'wsrep_local_state_comment', 'wsrep_cluster_state_uuid')",
            )
            ready = (
                status.get("wsrep_ready", "").upper() == "ON"
                and status.get("wsrep_local_state_comment") == "Synced"
            )
            return ServerRole("primary", ready, status.get("wsrep_cluster_state_uuid") or None)
        read_only = settings.get("read_only", "OFF").upper() == "ON"
        source = await self._replica_status(raw)
        if source is _HIDDEN:
            # a login without the right to see replication: read_only is all we have
            return ServerRole("replica" if read_only else "primary", True)
        if source is None:
            # no replication source: a primary, or a demoted one that nothing feeds
            return ServerRole("replica" if read_only else "primary", not read_only)
        running = all(_field(source, f"Slave_{t}_Running") == "Yes" for t in ("IO", "SQL"))
        return ServerRole("replica", running)

    async def write_position(self, raw: Any) -> str:
        """This session's last committed GTID (@@last_gtid), or the server's whole binlog
        position when the session wrote nothing yet. On a Galera node: the node's Galera
        position (see `_galera_position`), which covers a commit this session just made."""
        if self.galera:
            return await self._galera_position(raw)
        self._need_mariadb_gtids()
        _, rows = await self.fetch(raw, "SELECT @@last_gtid, @@gtid_binlog_pos", ())
        last, binlog = rows[0]
        return str(last or binlog or "")

    async def replay_position(self, raw: Any) -> str | None:
        """The GTIDs the replica's SQL thread has applied (@@gtid_slave_pos); on a Galera
        node, the Galera position it has committed (writes of every node included)."""
        if self.galera:
            return await self._galera_position(raw)
        self._need_mariadb_gtids()
        _, rows = await self.fetch(raw, "SELECT @@gtid_slave_pos", ())
        return str(rows[0][0]) if rows[0][0] else None

    def position_covers(self, replayed: str, wanted: str) -> bool:
        """Domain by domain: the replica has applied each domain's wanted sequence number.
        (Sequence numbers grow within a domain whatever server wrote them.) Galera
        positions ("state-uuid:seqno") compare by seqno within one cluster history; a
        Galera position is never compared with a GTID one (InterfaceError)."""
        galera = _is_galera(replayed), _is_galera(wanted)
        if galera == (True, True):
            return _galera_covers(replayed, wanted)
        if galera != (False, False):
            _gtid_set(wanted if galera[0] else replayed)  # a malformed one is named first
            raise InterfaceError(
                "cannot compare a Galera position with a MariaDB GTID position: "
                f"{replayed[:60]!r}, {wanted[:60]!r}"
            )
        have = _gtid_set(replayed)
        return all(have.get(domain, -1) >= seq for domain, seq in _gtid_set(wanted).items())

    def merge_positions(self, first: str, second: str) -> str:
        """Both positions in one (the router's optional method): per domain, the GTID with
        the higher sequence number. A context whose writes went to two replication domains
        then waits for both. Anything but two GTID positions: the second, the newer one."""
        try:
            for position in (first, second):
                _gtid_set(position)
        except InterfaceError:
            return second
        latest: dict[int, tuple[int, str]] = {}
        for item in f"{first},{second}".split(","):
            if item.strip():
                domain, _, seq = item.strip().split("-")
                if int(seq) >= latest.get(int(domain), (-1, ""))[0]:
                    latest[int(domain)] = (int(seq), item.strip())
        return ",".join(gtid for _, (_, gtid) in sorted(latest.items()))

    async def replica_lag(self, raw: Any) -> float | None:
        """Seconds_Behind_Master: None on a primary, or while replication is stopped."""
        source = await self._replica_status(raw)
        lag = (
            None if source is None or source is _HIDDEN else _field(source, "Seconds_Behind_Master")
        )
        return None if lag is None else float(lag)

    def readonly_session_sql(self) -> list[str]:
        # Unlike read_only=ON, binding for privileged logins too (error 1792 on a write).
        return ["SET SESSION TRANSACTION READ ONLY"]

    async def wait_for_position(self, raw: Any, wanted: str, timeout: float) -> bool:  # noqa: ASYNC109
        """MASTER_GTID_WAIT on the replica: True once it has applied `wanted`. The server
        does the waiting (the timeout is its argument), so no client timer is involved."""
        self._need_mariadb_gtids()
        _gtid_set(wanted)  # a malformed position fails here, clearly
        _, rows = await self.fetch(raw, "SELECT MASTER_GTID_WAIT(%s, %s)", (wanted, timeout))
        return bool(rows[0][0] == 0)

    async def _galera_position(self, raw: Any) -> str:
        """Galera's own global transaction id, "state-uuid:seqno": `wsrep_last_committed` is
        the cluster-wide seqno of the last transaction this node committed (in seqno order,
        so once a COMMIT has returned it covers that commit), within the state history
        named by `wsrep_local_state_uuid`."""
        status = await self._values(
            raw,
            "SHOW GLOBAL STATUS WHERE Variable_name IN "
            "('wsrep_local_state_uuid', 'wsrep_last_committed')",
        )
        position = (
            f"{status.get('wsrep_local_state_uuid', '')}:{status.get('wsrep_last_committed', '')}"
        )
        _galera_position_parts(position)  # a node that is not (yet) in a cluster fails here
        return position

    async def _values(self, raw: Any, sql: str) -> dict[str, str]:
        _, rows = await self.fetch(raw, sql, ())
        return {str(name).lower(): str(value) for name, value in rows}

    def _need_mariadb_gtids(self) -> None:
        if self.engine != "mariadb":
            raise InterfaceError(
                f"replication positions are MariaDB GTIDs; not supported on {self.engine} "
                f"(replicas= routes over MariaDB servers and Galera clusters only)"
            )

    async def _replica_status(self, raw: Any) -> dict[str, Any] | None:
        """The default replication source's status row; None when there is none, _HIDDEN
        when the login may not see it (no SLAVE MONITOR / REPLICATION CLIENT privilege)."""
        # MySQL 8.4 dropped SHOW SLAVE STATUS; MariaDB before 10.5 lacks SHOW REPLICA STATUS
        sql = "SHOW REPLICA STATUS" if self.engine == "mysql" else "SHOW SLAVE STATUS"
        try:
            columns, rows = await self.fetch(raw, sql, ())
        except self._err.OperationalError as exc:
            if exc.args and exc.args[0] == _ACCESS_DENIED:
                return _HIDDEN
            raise
        if not rows:
            return None
        return dict(zip(columns, rows[0], strict=False))


def _field(status: dict[str, Any], name: str) -> Any:
    """A SHOW SLAVE STATUS field by its MariaDB name, or by MySQL 8's Replica/Source name."""
    if name in status:
        return status[name]
    return status.get(name.replace("Slave", "Replica").replace("Master", "Source"))


def _gtid_set(text: str) -> dict[int, int]:
    """Parse a MariaDB GTID position "domain-server-seq,...": the highest seq per domain."""
    seqs: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        parts = item.split("-")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise InterfaceError(
                f"not a MariaDB GTID position: {text!r} (expected domain-server-seq, ...)"
            )
        domain, seq = int(parts[0]), int(parts[2])
        seqs[domain] = max(seq, seqs.get(domain, -1))
    return seqs


def _is_galera(position: str) -> bool:
    try:
        _galera_position_parts(position)
    except InterfaceError:
        return False
    return True


def _galera_position_parts(position: str) -> tuple[str, int]:
    """Parse a Galera position "state-uuid:seqno" (seqno -1: nothing committed yet)."""
    uuid_text, _, seqno = position.rpartition(":")
    try:
        uuid.UUID(uuid_text)
        number = int(seqno)
        if len(uuid_text) != 36 or not seqno.lstrip("-").isdigit() or number < -1:
            raise ValueError
    except ValueError:
        raise InterfaceError(
            f"not a Galera position: {position[:60]!r} (expected state-uuid:seqno)"
        ) from None
    return uuid_text.lower(), number


def _galera_covers(replayed: str, wanted: str) -> bool:
    """A node has a write once it committed its seqno in the same state history; a
    position of another history (another cluster, or one bootstrapped anew) is not known to
    be covered."""
    have_uuid, have = _galera_position_parts(replayed)
    want_uuid, want = _galera_position_parts(wanted)
    return have_uuid == want_uuid and have >= want


def _read_only(code: int | None, text: str) -> bool:
    # 1792 ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION. 1290 ER_OPTION_PREVENTS_STATEMENT names
    # the option, which may be another one (--secure-file-priv...): only read-only counts.
    # 1047 ER_UNKNOWN_COM_ERROR "WSREP has not yet prepared node for application use": a
    # Galera node that is not ready (joining, out of the primary component, shutting down)
    # refuses every statement before running it; the work belongs on another node.
    return (
        code == 1792
        or (code == 1290 and ("read-only" in text or "read_only" in text))
        or (code == 1047 and "wsrep" in text)
    )


def _session_sql(options: dict[str, Any]) -> list[str]:
    """`wsrep_sync_wait` (Galera, 0-15): 1 makes reads wait until the node has applied every
    write the cluster committed before them (read-your-writes across nodes)."""
    if "wsrep_sync_wait" not in options:
        return []
    value = options.pop("wsrep_sync_wait")
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not 0 <= int(text) <= 15:
        raise InterfaceError(f"wsrep_sync_wait must be an integer from 0 to 15, got {value!r}")
    return [f"SET SESSION wsrep_sync_wait = {int(text)}"]


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


async def _drain(raw: Any) -> None:
    """multi_statements: read the further results now, as closing a cursor would, so that
    the session state is current when the statement returns."""
    while raw._result is not None and raw._result.has_next:
        await raw.next_result()


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
