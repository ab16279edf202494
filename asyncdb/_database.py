"""Database: the entry point. Owns the pool, the compiler and the task → Connection map."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any

from . import _pool
from ._compile import Compiler, Query
from ._connection import UNSET, Connection, Timeout, _Unset
from ._context import _STACKS, transaction_stack
from ._exceptions import InterfaceError, ReadOnlyError
from ._hooks import Hook, Hooks
from ._listen import Listener
from ._pool import RESET_MODES, OnConnect, Pool, check_options, check_timeout, fork_generation
from ._records import Record
from ._routing import REPLICA_METHODS, RolePool, RoutedConnection, Router, parse_replicas
from ._transaction import Transaction
from ._url import DatabaseURL
from .backends import create_backend
from .backends._common import parse_bool
from .backends.base import Backend, ExecuteResult

__all__ = ["Database"]


def _running_tasks() -> dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None:
    """The dict of each loop's running task that asyncio.current_task() reads (a Python
    function on 3.11, so reading the dict saves a call per statement), or None. Used only
    when asyncio's C module keeps the running task in that very dict (3.11-3.13): a Python
    that keeps it elsewhere (3.14 keeps it per thread) leaves the dict empty, and reading
    it there would find no task at all."""
    tasks = getattr(asyncio.tasks, "_current_tasks", None)
    try:
        import _asyncio
    except ImportError:  # asyncio in pure Python: current_task() reads this dict
        return tasks if isinstance(tasks, dict) else None
    same = getattr(_asyncio, "_current_tasks", None) is tasks
    return tasks if same and isinstance(tasks, dict) else None


_TASKS = _running_tasks()

_POOL_OPTIONS = (
    "min_size",
    "max_size",
    "acquire_timeout",
    "max_lifetime",
    "pre_ping",
    "reconnect",
    "reconnect_timeout",
    "reset",
    "query_timeout",
)


class Database:
    """A database reached through a URL; the scheme picks the backend.

    ```python
    async with Database("postgresql://user:pw@localhost/app") as db:
        rows = await db.fetch_all("SELECT * FROM notes WHERE id > :id", {"id": 3})
    ```

    **Options** (keyword arguments or URL query string): `min_size`, `max_size`,
    `acquire_timeout` (seconds to wait for a free connection), `max_lifetime` (seconds
    before a connection is recycled), `pre_ping` (ping a connection idle for more than
    this many seconds before handing it out; `false` to turn off), `reset` ("auto" or
    "always": when a released connection's session state is reset before another task gets
    it), `on_connect` (an async callable run with every new raw driver connection, and again
    after each reset), `connect_timeout` (every backend, default 10 s: bounds the whole
    connect, TLS and authentication included, so a server that never answers cannot hang
    us), `ssl` (`true`, `false`, `require`, `verify-ca`, `verify-full` or an
    `ssl.SSLContext`) with `sslrootcert` or `ssl_ca` (a CA file); PostgreSQL: `sslmode`,
    `application_name`, `options` (`-c name=value`), `target_session_attrs`,
    `statement_cache_size`, `command_timeout`, `server_settings`, `host` (a socket
    directory); MySQL: `charset`, `init_command`, `unix_socket`, `multi_statements` (off: one
    statement per query string), `wsrep_sync_wait` (Galera: 1 makes reads see writes other
    nodes committed before them); SQLite: `busy_timeout`. `query_timeout` (seconds, default
    none) is the default of every query method's `timeout=`: a query running longer is
    cancelled on the server and raises QueryTimeoutError.

    Each task gets its own connection; `force_rollback=True` makes every task share one
    connection inside a transaction that is rolled back at `disconnect()` (for tests).
    Queries are logged at DEBUG on the `asyncdb.query` logger, without their parameters
    unless `log_parameters=True`; `add_hook()` registers callbacks for metrics and tracing.

    **Replicas** (PostgreSQL, MariaDB, Galera): `replicas="auto"` (every host of the URL,
    whichever is primary) or a list of replica URLs routes reads outside a transaction to a
    replica and everything else to the primary; `max_replica_lag` (seconds, default 1),
    `read_your_writes_wait` (seconds, default 0.2) and `replica_check_interval` (seconds
    between two checks of every host, default 1). See `connection(role=...)`,
    `consistency_token()` and `consistent_with()`.
    """

    def __init__(
        self,
        url: str | DatabaseURL,
        *,
        force_rollback: bool = False,
        log_parameters: bool = False,
        on_connect: OnConnect | None = None,
        **options: Any,
    ) -> None:
        self.url = DatabaseURL(url)
        self._force_rollback = force_rollback
        self._hooks = Hooks()
        merged: dict[str, Any] = {**self.url.options, **options}
        pool_options = {k: merged.pop(k) for k in list(merged) if k in _POOL_OPTIONS}
        routing = {k: merged.pop(k) for k in list(merged) if k in _ROUTING_OPTIONS}
        backend_options = dict(merged)
        self._backend = create_backend(self.url, merged)
        if self._backend.record_class is not None:
            Record.register(self._backend.record_class)  # isinstance(row, asyncdb.Record)
        if merged:
            raise InterfaceError(f"unknown database options: {', '.join(sorted(merged))}")
        self._pool_options = _pool_options(pool_options, self._backend)
        check_options(
            min_size=self._pool_options.get("min_size", 1),
            max_size=self._pool_options.get("max_size", 10),
            reconnect=self._pool_options.get("reconnect", "fail_fast"),
        )
        if on_connect is not None and not callable(on_connect):
            raise InterfaceError(f"on_connect must be an async callable, got {on_connect!r}")
        self._pool_options.update(
            hooks=self._hooks, log_parameters=log_parameters, on_connect=on_connect
        )
        self._compiler = Compiler(
            self._backend.dialect, getattr(self._backend, "adapt_parameter", None)
        )
        self._pool: Pool | None = None
        self._connections: weakref.WeakKeyDictionary[asyncio.Task[Any], Connection] = (
            weakref.WeakKeyDictionary()
        )
        self._global_connection: Connection | None = None
        self._global_transaction: Transaction | None = None
        self._generation = fork_generation()
        self._listeners: weakref.WeakSet[Listener] = weakref.WeakSet()
        self._routing = _routing_options(routing, self._backend, backend_options)
        self._router: Router | None = None
        self._routed = False  # replicas= given and not force_rollback: reads go to replicas
        self._replica_pool: RolePool | None = None
        self._replica_connections: weakref.WeakKeyDictionary[asyncio.Task[Any], Connection] = (
            weakref.WeakKeyDictionary()
        )
        self._pinned: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def __repr__(self) -> str:
        state = "connected" if self.is_connected else "disconnected"
        return f"<Database {self.url!s} {state}>"

    @property
    def is_connected(self) -> bool:
        return self._pool is not None

    @property
    def force_rollback(self) -> _ForceRollback:
        """`with db.force_rollback():` as in encode/databases; `bool(db.force_rollback)`
        is the current mode (read when `connect()` runs)."""
        return _ForceRollback(self)

    @property
    def backend_name(self) -> str:
        return self._backend.name

    # -- lifecycle ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the pool (and, with force_rollback, the shared outer transaction). Idempotent."""
        self._check_fork()
        if self._pool is not None:
            return
        pool = self._new_pool()
        await pool.open()
        self._pool = pool
        self._routed = self._router is not None and not self._force_rollback
        if self._force_rollback:
            try:
                connection = Connection(pool, self._compiler)
                await connection.__aenter__()
                self._global_connection = connection
                transaction = connection.transaction()
                transaction._detached = True
                self._global_transaction = await transaction.start()
            except BaseException:
                await self.disconnect()  # no half-connected Database
                raise

    def _new_pool(self) -> Pool:
        options = dict(self._pool_options)
        if self._force_rollback:
            # force_rollback shares one connection on purpose: nothing to reset between tasks.
            options["reset"] = "never"
        if self._routing is not None:
            return self._new_router(options)
        return Pool(self._backend, **options)

    def _new_router(self, options: dict[str, Any]) -> Pool:
        replicas, backend_options, timing = self._routing  # type: ignore[misc]
        router = Router(self.url, backend_options, replicas, options, **timing)
        self._router = router
        self._replica_pool = RolePool(router, "replica", **options)
        return RolePool(router, "primary", **options)

    async def disconnect(self) -> None:
        """Roll back force_rollback's transaction and close the pool. Idempotent.

        In a process forked from the one that connected, nothing is sent on the inherited
        connections: they are abandoned and the pool is emptied.
        """
        self._check_fork()
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            if self._global_transaction is not None and self._global_transaction.is_active:
                await self._global_transaction.rollback()
            if self._global_connection is not None:
                await self._global_connection.__aexit__(None, None, None)
        finally:
            self._global_transaction = self._global_connection = None
            self._connections = weakref.WeakKeyDictionary()
            for listener in list(self._listeners):
                listener._shutdown()  # their loops end; their connections close
            self._replica_connections = weakref.WeakKeyDictionary()
            self._routed = False
            await pool.close()

    async def __aenter__(self) -> Database:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    # -- connections and transactions ----------------------------------------------------

    def connection(self, role: str | None = None) -> Connection:
        """The current task's connection (the shared one with force_rollback).

        With replicas, `role="primary"` (the default) or `role="replica"` picks which of the
        task's two connections: a replica connection reads from a replica whose data is
        recent enough (or from the primary when none is), and is read-only on the server."""
        if role is not None and role not in ("primary", "replica"):
            raise InterfaceError(f'role must be "primary" or "replica", got {role!r}')
        if role == "replica" and self._routed:
            return self._task_connection(self._replica_connections, self._replica_pool)
        if self._generation != _pool._fork_generation:  # _check_fork's test, inline
            self._check_fork()
        if self._pool is None:
            raise InterfaceError("the database is not connected; call 'await db.connect()' first")
        if self._global_connection is not None:
            return self._global_connection
        # asyncio.current_task(), inline where it is a Python function (3.11): this runs for
        # every statement and every transaction
        task = (
            _TASKS.get(asyncio.get_running_loop()) if _TASKS is not None else asyncio.current_task()
        )
        if task is None:
            raise InterfaceError("asyncdb must be used from inside an asyncio task")
        connection = self._connections.get(task)
        if connection is None:
            if self._routed:
                return self._task_connection(self._connections, self._pool)
            connection = self._connections[task] = Connection(self._pool, self._compiler)
        return connection

    def _task_connection(
        self, connections: weakref.WeakKeyDictionary[asyncio.Task[Any], Connection], pool: Any
    ) -> Connection:
        task = asyncio.current_task()
        if task is None:
            raise InterfaceError("asyncdb must be used from inside an asyncio task")
        connection = connections.get(task)
        if connection is None:
            connection = connections[task] = RoutedConnection(pool, self._compiler)
        return connection

    def _reader(self) -> tuple[Connection, bool]:
        """Where a read goes with replicas: the transaction's connection inside one (or the
        primary connection a task holds with `async with`), else the task's replica
        connection (unless a write misrouted to a replica pinned the task to the primary).
        The flag says it is the replica connection outside a transaction: a write sent there
        by mistake may run again on the primary (`_pin`). One task lookup, one look at the stacks:
        this runs for every routed read."""
        primary = self.connection()  # the fork and connect checks, the task's primary
        task = (
            _TASKS.get(asyncio.get_running_loop()) if _TASKS is not None else asyncio.current_task()
        )
        replicas = self._replica_connections
        replica = replicas.get(task)  # type: ignore[arg-type]
        if replica is None:
            replica = self._task_connection(replicas, self._replica_pool)
        stacks = _STACKS.get()  # a connection is in it only with transactions open
        if replica in stacks:
            return replica, False  # savepoints and reads of a read-only transaction stay there
        if primary in stacks or primary._pooled is not None or task in self._pinned:
            return primary, False
        return replica, True

    def _writer(self) -> Connection:
        replica = self.connection(role="replica")
        return replica if transaction_stack(replica) else self.connection()

    def _transaction_connection(self, readonly: bool) -> Connection:
        replica = self.connection(role="replica")
        if transaction_stack(replica):
            return replica  # savepoints of a read-only transaction stay on its replica
        primary = self.connection()
        if not readonly or transaction_stack(primary) or asyncio.current_task() in self._pinned:
            return primary
        return replica

    def _pin(self) -> None:
        """A write sent to a replica by a read call failed there, on the read-only server,
        before it did anything: it runs once more on the primary, where this task then stays
        (the fetch_* methods do the rerun themselves, so that a routed read resumes no frame
        of ours in between while it waits)."""
        task = asyncio.current_task()
        if task is not None:
            self._pinned.add(task)
        assert self._router is not None
        self._router.note_misrouted_write()

    def consistency_token(self) -> str:
        """A token for the writes this context made (empty if none): hand it to a later
        request (a cookie, a header) and read with `consistent_with(token)` there, so that it
        sees those writes even on a replica."""
        if self._router is None:
            return ""
        return self._router.token()

    @contextlib.asynccontextmanager
    async def consistent_with(self, token: str) -> AsyncIterator[None]:
        """Inside the block, reads see at least the writes `token` stands for: from a
        replica that has them (waiting up to `read_your_writes_wait`), else from the
        primary. A malformed token raises InterfaceError."""
        if self._router is None:
            if not isinstance(token, str):
                raise InterfaceError("a consistency token is a str")
            yield
            return
        async with self._router.consistent_with(token):
            yield

    def transaction(self, *, force_rollback: bool = False, **options: Any) -> Transaction:
        """A transaction on the calling task's connection (resolved when it starts, so one
        decorated function can serve many concurrent tasks).

        Options: `isolation` (e.g. "serializable"), `readonly`; `force_rollback=True` always
        rolls back; `reconnect` ("fail_fast" or "backoff") overrides the database's mode for
        this transaction's checkout; `retry` (a number of attempts or an `asyncdb.Retry`),
        decorator form only, re-runs the function after a ConflictError or a disconnect that
        happened before COMMIT was sent, never after CommitOutcomeUnknownError."""
        resolve: Callable[[], Connection] = self.connection
        if self._routed:
            readonly = bool(options.get("readonly"))

            def resolve_routed() -> Connection:
                return self._transaction_connection(readonly)

            resolve = resolve_routed
        transaction = Transaction(resolve, force_rollback=force_rollback, **options)
        if transaction._options.isolation is not None:
            self._backend.begin_sql(transaction._options)  # a bad name fails here, not later
        return transaction

    def add_hook(self, event: str, callback: Hook) -> None:
        """Call `callback(event, details)` on `query_start`, `query_end`, `acquire`,
        `transaction_start`, `transaction_end`, `connect`, `invalidate`, `reset` or
        `disconnect_detected` (see `asyncdb._hooks` for the details)."""
        self._hooks.add(event, callback)

    def remove_hook(self, event: str, callback: Hook) -> None:
        self._hooks.remove(event, callback)

    def pool_stats(self) -> dict[str, Any]:
        """Pool counters: size, max_size, idle, in_use, waiting, created, invalidated, recovered,
        resets, requests. With replicas, the sums over all hosts plus `hosts` (each host's
        role, state, lag in seconds, Galera cluster id and counters), `primary`, `cluster`
        ("galera" when the hosts form one Galera cluster), `fallbacks` and `rediscoveries`."""
        if self._pool is None:
            raise InterfaceError("the database is not connected")
        return self._pool.stats()

    # -- queries on the current task's connection ----------------------------------------

    # `timeout=`: seconds (None: no limit; not given: the `query_timeout` option). A query
    # running longer is cancelled on the server and raises QueryTimeoutError.

    async def fetch_all(
        self, query: Query, values: Mapping[str, Any] | None = None, *, timeout: Timeout = UNSET
    ) -> list[Record]:
        """Run a query and return all its rows."""
        if self._routed:
            connection, may_retry = self._reader()
            try:
                return await connection.fetch_all(query, values, timeout=timeout)
            except ReadOnlyError:
                if not may_retry:
                    raise
                self._pin()
        return await self.connection().fetch_all(query, values, timeout=timeout)

    async def fetch_one(
        self, query: Query, values: Mapping[str, Any] | None = None, *, timeout: Timeout = UNSET
    ) -> Record | None:
        """Run a query and return its first row, or None."""
        if self._routed:
            connection, may_retry = self._reader()
            try:
                return await connection.fetch_one(query, values, timeout=timeout)
            except ReadOnlyError:
                if not may_retry:
                    raise
                self._pin()
        return await self.connection().fetch_one(query, values, timeout=timeout)

    async def fetch_val(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        column: Any = 0,
        *,
        timeout: Timeout = UNSET,
    ) -> Any:
        """Run a query and return one value of its first row."""
        if self._routed:
            connection, may_retry = self._reader()
            try:
                return await connection.fetch_val(query, values, column=column, timeout=timeout)
            except ReadOnlyError:
                if not may_retry:
                    raise
                self._pin()
        return await self.connection().fetch_val(query, values, column=column, timeout=timeout)

    async def execute(
        self, query: Query, values: Mapping[str, Any] | None = None, *, timeout: Timeout = UNSET
    ) -> Any:
        """Run a statement; see `Connection.execute` for the return value."""
        if self._routed:
            return await self._writer().execute(query, values, timeout=timeout)
        return await self.connection().execute(query, values, timeout=timeout)

    async def execute_result(
        self, query: Query, values: Mapping[str, Any] | None = None, *, timeout: Timeout = UNSET
    ) -> ExecuteResult:
        """Run a statement; see `Connection.execute_result`."""
        if self._routed:
            return await self._writer().execute_result(query, values, timeout=timeout)
        return await self.connection().execute_result(query, values, timeout=timeout)

    async def execute_many(
        self, query: Query, values: Sequence[Mapping[str, Any]], *, timeout: Timeout = UNSET
    ) -> None:
        """Run a statement once per mapping in `values`."""
        if self._routed:
            await self._writer().execute_many(query, values, timeout=timeout)
            return
        await self.connection().execute_many(query, values, timeout=timeout)

    def iterate(
        self, query: Query, values: Mapping[str, Any] | None = None, *, timeout: Timeout = UNSET
    ) -> AsyncIterator[Record]:
        """Stream the rows of a query; memory stays flat however many rows there are.
        `timeout` bounds each fetch of a batch of rows, not the whole iteration.

        Returns the connection's own iterator: no second generator between rows and caller."""
        if self._routed:
            return self._reader()[0].iterate(query, values, timeout=timeout)
        return self.connection().iterate(query, values, timeout=timeout)

    # -- PostgreSQL: LISTEN/NOTIFY and COPY -----------------------------------------------------

    def listen(
        self,
        *channels: str,
        reconnect_timeout: float | _Unset | None = UNSET,
        ping_interval: float | None = 30.0,
    ) -> Listener:
        """`async for note in db.listen("a", "b"):` yields a `Notification` for each NOTIFY on
        these channels, on a dedicated connection outside the pool, closed when the loop is
        left. After a lost connection it reconnects with back-off (for `reconnect_timeout`
        seconds, by default the database's; None: forever), then yields one
        `Notification(missed=True)` per channel. An idle connection is pinged every
        `ping_interval` seconds to notice a line that died silently. PostgreSQL only."""
        self._check_fork()
        if getattr(self._backend, "listen", None) is None:
            raise InterfaceError(
                f"LISTEN/NOTIFY needs PostgreSQL; this database is {self._backend.name}",
                backend=self._backend.name,
            )
        if self._pool is None:
            raise InterfaceError("the database is not connected; call 'await db.connect()' first")
        if reconnect_timeout is UNSET:
            reconnect_timeout = self._pool.reconnect_timeout
        listener = Listener(
            self._pool, channels, reconnect_timeout=reconnect_timeout, ping_interval=ping_interval
        )
        self._listeners.add(listener)
        return listener

    async def notify(
        self, channel: str, payload: str | None = None, *, timeout: Timeout = UNSET
    ) -> None:
        """Send a notification through the task's connection (pg_notify): inside a
        transaction it is delivered at COMMIT, and not at all after a rollback."""
        await self.connection().notify(channel, payload, timeout=timeout)

    async def copy_records_to_table(
        self,
        table: str,
        *,
        records: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]],
        columns: Sequence[str] | None = None,
        schema_name: str | None = None,
        where: str | None = None,
        timeout: Timeout = UNSET,
    ) -> int:
        """Binary COPY of `records` into a table; see `Connection.copy_records_to_table`."""
        return await self.connection().copy_records_to_table(
            table,
            records=records,
            columns=columns,
            schema_name=schema_name,
            where=where,
            timeout=timeout,
        )

    async def copy_to_table(
        self,
        table: str,
        *,
        source: Any,
        columns: Sequence[str] | None = None,
        schema_name: str | None = None,
        timeout: Timeout = UNSET,
        **options: Any,
    ) -> int:
        """COPY bytes (CSV, text...) into a table; see `Connection.copy_to_table`."""
        return await self.connection().copy_to_table(
            table,
            source=source,
            columns=columns,
            schema_name=schema_name,
            timeout=timeout,
            **options,
        )

    async def copy_from_query(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        output: Any,
        timeout: Timeout = UNSET,
        **options: Any,
    ) -> int:
        """COPY the rows of a query to `output`; see `Connection.copy_from_query`."""
        return await self.connection().copy_from_query(
            query, values, output=output, timeout=timeout, **options
        )

    # -- fork ------------------------------------------------------------------------------

    def _check_fork(self) -> None:
        if self._generation == fork_generation():
            return
        # A forked child: connections and the event loop belong to the parent. Start over;
        # the pool abandons what it inherited without touching it.
        self._generation = fork_generation()
        self._connections = weakref.WeakKeyDictionary()
        self._replica_connections = weakref.WeakKeyDictionary()
        self._global_connection = self._global_transaction = None
        if self._pool is not None:
            self._pool._check_fork()
            self._pool = self._new_pool()


_ROUTING_OPTIONS = (
    "replicas",
    "max_replica_lag",
    "read_your_writes_wait",
    "replica_check_interval",
)
RoutingOptions = tuple[list[str], dict[str, Any], dict[str, float]]


def _routing_options(
    given: dict[str, Any], backend: Backend, backend_options: dict[str, Any]
) -> RoutingOptions | None:
    """Check replicas=, max_replica_lag=, read_your_writes_wait= and
    replica_check_interval= at Database()."""
    replicas = parse_replicas(given.get("replicas"))
    if replicas is None:
        extra = sorted(set(given) - {"replicas"})
        if extra:
            raise InterfaceError(f"{', '.join(extra)} only apply with replicas=")
        return None
    missing = [name for name in REPLICA_METHODS if not hasattr(backend, name)]
    if missing:
        raise InterfaceError(
            f"replicas= is not supported on {backend.name}: its backend cannot tell a primary "
            "from a replica"
        )
    if "target_session_attrs" in backend_options:
        raise InterfaceError(
            "target_session_attrs does not apply with replicas=: asyncdb asks each host its "
            "role and routes to it"
        )
    for replica in replicas:
        if DatabaseURL(replica).dialect != backend.url.dialect:
            raise InterfaceError(
                f"replica {DatabaseURL(replica)} is not a {backend.url.dialect} URL like the "
                "database's"
            )
    timing = {
        "max_replica_lag": _seconds("max_replica_lag", given.get("max_replica_lag", 1.0)),
        "read_your_writes_wait": _seconds(
            "read_your_writes_wait", given.get("read_your_writes_wait", 0.2), zero=True
        ),
        "check_interval": _seconds(
            "replica_check_interval", given.get("replica_check_interval", 1.0)
        ),
    }
    return replicas, backend_options, timing


def _seconds(name: str, value: Any, *, zero: bool = False) -> float:
    seconds = float(_number(name, value, float))
    if not seconds >= 0 or (seconds == 0 and not zero) or seconds == float("inf"):
        raise InterfaceError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


def _pool_options(given: dict[str, Any], backend: Backend) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, value in given.items():
        if name == "reconnect":
            options[name] = str(value)
        elif name == "reset":
            if value not in RESET_MODES:
                raise InterfaceError(
                    f"reset must be one of {', '.join(RESET_MODES)}, got {value!r}"
                )
            options[name] = value
        elif name == "pre_ping":
            options["pre_ping_idle"] = _pre_ping(value)
        elif name == "query_timeout":
            options[name] = check_timeout("query_timeout", value)
        elif name in ("min_size", "max_size"):
            options[name] = _number(name, value, int)
        else:
            options[name] = _number(name, value, float)
    if backend.is_memory:
        # One in-memory database lives in one connection: every task shares it, and it is
        # never closed while the Database is connected.
        options.update(min_size=1, max_size=1, max_lifetime=None, pre_ping_idle=None)
    else:
        options.setdefault("min_size", 1)
    return options


def _pre_ping(value: Any) -> float | None:
    """`pre_ping=False` turns it off, `True` pings on every checkout, a number is the idle
    time in seconds after which a connection is pinged before use."""
    if isinstance(value, bool) or str(value).lower() in ("true", "false", "yes", "no", "on", "off"):
        return 0.0 if parse_bool(value) else None
    return float(_number("pre_ping", value, float))


def _number(name: str, value: Any, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InterfaceError(f"database option {name} must be a number, got {value!r}") from None


class _ForceRollback:
    """What `Database.force_rollback` returns. encode/databases made it a method returning
    a context manager while asyncdb exposed a bool; this is both, so code written for
    either keeps working."""

    __slots__ = ("_database",)

    def __init__(self, database: Database) -> None:
        self._database = database

    def __bool__(self) -> bool:
        return self._database._force_rollback

    def __repr__(self) -> str:
        return f"<force_rollback {self._database._force_rollback}>"

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        """Every `connect()` inside the block is in force-rollback mode; leaving the block
        restores the previous mode (a Database connected inside stays as it connected)."""
        database = self._database
        initial = database._force_rollback
        database._force_rollback = True
        try:
            yield
        finally:
            database._force_rollback = initial
