"""Connection: one task's (or one handed-over) use of a pooled raw connection.

A Connection holds a raw connection only while it is in use: from the first statement (or
`async with`) until the last user leaves and no transaction is open. It serializes
statements on the wire, tracks the transaction levels open on the server, and keeps the
error state of a failed transaction: after an error that may have undone more than the
statement, every statement is refused until the failed level is rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import itertools
import logging
import re
import time
import warnings
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, TypeVar

from ._compile import Compiled, Compiler, Query
from ._context import _STACKS
from ._copy import (
    COPY_IN_OPTIONS,
    COPY_OUT_OPTIONS,
    CallbackFailed,
    check_copy_options,
    check_names,
    target_sql,
)
from ._errors import driver_error
from ._exceptions import (
    CommitOutcomeUnknownError,
    ConflictError,
    DatabaseError,
    DataError,
    DisconnectionError,
    InterfaceError,
    ProgrammingError,
    QueryTimeoutError,
    ReadOnlyError,
    TransactionAbortedError,
)
from ._listen import check_channel
from ._pool import Pool, PooledConnection, check_timeout
from ._records import Record
from ._wire import WireLock
from .backends.base import Backend, ErrorKind, ErrorScope, ExecuteResult, TransactionOptions

if TYPE_CHECKING:
    from ._transaction import Transaction

__all__ = ["UNSET", "Connection", "Timeout"]


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET = _Unset.UNSET  # `timeout=` not given: the database's query_timeout applies
Timeout = float | None | _Unset

logger = logging.getLogger("asyncdb.query")
T = TypeVar("T")

_savepoint_ids = itertools.count(1)
_ITERATE_BATCH = 1000
_SAME_TASK_WAIT = 2.0


class Connection:
    """A connection for the current task, or handed explicitly to child tasks.

    Get one with `db.connection()`. `async with conn:` keeps the raw connection checked out
    for the block; otherwise it is checked out per statement and per transaction.
    """

    def __init__(self, pool: Pool, compiler: Compiler) -> None:
        self._pool = pool
        self._backend: Backend = pool.backend
        self._compiler = compiler
        self._pooled: PooledConnection | None = None
        self._native_rows = self._backend.record_class is not None
        self._users = 0
        self._lock = WireLock()  # one statement on the wire at a time
        # The task holding the wire while it runs code of its own (an iteration's loop body,
        # a COPY callback): the only times it could ask for the wire again itself.
        self._lock_owner: asyncio.Task[Any] | None = None
        self._turn = WireLock()  # held by the context whose transaction owns the connection
        self._turn_owner: Transaction | None = None
        self._gate: asyncio.Lock | None = None  # the backend's writer gate, while we hold it
        self._write_gate: tuple[asyncio.Lock, float] | None = None  # to take at the first write
        self._levels: list[str | None] = []  # open on the server: None = outermost, else savepoint
        self._failed: tuple[int, DatabaseError | BaseException] | None = None

    def __repr__(self) -> str:
        state = f"depth={len(self._levels)}" + (" failed" if self._failed else "")
        return f"<Connection {self._backend.name} {state}>"

    def __del__(self) -> None:
        # Only a transaction started by hand and never ended keeps a connection checked
        # out past its task: give the slot back (the server rolls the transaction back).
        pooled = getattr(self, "_pooled", None)
        if pooled is None:
            return
        warnings.warn(
            "an asyncdb connection was dropped with a transaction still open; it was discarded "
            "and the transaction rolled back. End transactions with commit() or rollback(), "
            "or use 'async with db.transaction()'",
            ResourceWarning,
            stacklevel=1,
        )
        with contextlib.suppress(Exception):
            self._pool.release(pooled, discard=True)

    # -- checkout ------------------------------------------------------------------------

    async def __aenter__(self) -> Connection:
        self._users += 1
        try:
            await self._ensure_raw()
        except BaseException:
            self._users -= 1
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._users -= 1
        self._maybe_release()

    async def _ensure_raw(self, reconnect: str | None = None) -> PooledConnection:
        if self._pooled is not None:
            return self._pooled
        async with self._lock:
            return await self._ensure_raw_locked(reconnect)

    async def _ensure_raw_locked(self, reconnect: str | None = None) -> PooledConnection:
        if self._pooled is None:
            if self._levels:
                raise self._refusal()  # the transaction's connection is gone: no silent reconnect
            if self._pool.hooks.acquires:
                self._pooled = await self._acquire_observed(reconnect)
            else:
                self._pooled = await self._pool.acquire(reconnect)
        return self._pooled

    async def _acquire_observed(self, reconnect: str | None) -> PooledConnection:
        """`pool.acquire` with the `acquire` hook told how long getting a connection took."""
        pool, start = self._pool, time.perf_counter()
        pooled: PooledConnection | None = None
        error: BaseException | None = None
        try:
            pooled = await pool.acquire(reconnect)
            return pooled
        except BaseException as exc:
            error = exc
            raise
        finally:
            pool.hooks.emit(
                "acquire",
                backend=self._backend.name,
                pool=pool.name,
                wait=time.perf_counter() - start,
                connection_id=pooled.id if pooled is not None else None,
                error=error,
            )

    async def _lock_for(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None and self._lock_owner is task and self._lock.locked():
            # The same task holds the wire: either an iteration it broke out of is still
            # closing (wait a moment) or it runs a statement inside its own iteration.
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for may swallow a cancel that
                # arrives in the same loop turn as the lock.
                async with asyncio.timeout(_SAME_TASK_WAIT):
                    await self._lock.acquire()
            except TimeoutError:
                raise InterfaceError(
                    "this connection is busy with an iteration of the same task; finish the "
                    "iteration (or use fetch_all) before running another statement on it"
                ) from None
        else:
            await self._lock.acquire()

    def _maybe_release(self) -> None:
        if self._users == 0 and not self._levels and self._pooled is not None:
            pooled, self._pooled = self._pooled, None
            # A transaction opened with plain SQL ("BEGIN") must not reach the next user.
            leaked = self._backend.in_transaction(pooled.raw)
            if leaked:
                logger.warning(
                    "%s: connection released inside a transaction not opened with transaction(); "
                    "discarded, so the transaction is rolled back",
                    self._backend.name,
                )
            self._pool.release(pooled, discard=leaked)

    def _invalidate(self, *, interrupted: bool = False) -> None:
        """Take the raw connection away at once: it is dead, or (`interrupted`) a call on it
        was cancelled half-way, so its state is unknown until the pool recovers or drops it."""
        if self._pooled is not None:
            pooled, self._pooled = self._pooled, None
            self._pool.release(pooled, discard=True, interrupted=interrupted)

    @property
    def raw_connection(self) -> Any:
        """The driver's connection while one is checked out (inside `async with conn:`)."""
        if self._pooled is None:
            raise InterfaceError("no raw connection checked out; use 'async with conn:' first")
        # What user code does with it is unknown: the pool resets the session before reuse.
        self._pooled.dirty = True
        return self._pooled.raw

    def _mark(self, query: Compiled | None) -> None:
        """Note on the checked-out connection that it needs a reset before the next user."""
        pooled = self._pooled
        if pooled is not None and (query is None or query.dirty or self._pool.reset_always):
            pooled.dirty = True

    # -- queries -------------------------------------------------------------------------

    # Every query method takes `timeout=` (seconds; None: no limit; not given: the
    # database's query_timeout). When it fires the statement is cancelled on the server and
    # QueryTimeoutError is raised.

    async def fetch_all(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = UNSET,
    ) -> list[Record]:
        """Run a query and return all its rows."""
        compiled, args = self._compiler.compile(query, values)
        columns, rows = await self._run(
            self._backend.fetch,
            compiled.sql,
            args,
            query=compiled,
            timeout=timeout,
            operation="fetch_all",
        )
        return self._records(compiled, columns, rows)

    async def fetch_one(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = UNSET,
    ) -> Record | None:
        """Run a query and return its first row, or None."""
        compiled, args = self._compiler.compile(query, values)
        columns, rows = await self._run(
            self._backend.fetch,
            compiled.sql,
            args,
            query=compiled,
            timeout=timeout,
            operation="fetch_one",
        )
        return self._records(compiled, columns, rows[:1])[0] if rows else None

    async def _first_row(
        self, query: Query, values: Mapping[str, Any] | None, timeout: Timeout, operation: str
    ) -> Record | None:
        """`fetch_one` for `fetch_val`, named as such for the hooks."""
        compiled, args = self._compiler.compile(query, values)
        columns, rows = await self._run(
            self._backend.fetch,
            compiled.sql,
            args,
            query=compiled,
            timeout=timeout,
            operation=operation,
        )
        return self._records(compiled, columns, rows[:1])[0] if rows else None

    async def fetch_val(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        column: Any = 0,
        *,
        timeout: Timeout = UNSET,
    ) -> Any:
        """Run a query and return one value of its first row (None if there is no row)."""
        row = await self._first_row(query, values, timeout, "fetch_val")
        return None if row is None else row[column]

    async def execute(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = UNSET,
    ) -> Any:
        """Run a statement and return what encode/databases returns: on PostgreSQL the first
        value of the first row (None without RETURNING); on MySQL and SQLite the new row's id
        after an INSERT that generated one, else the number of rows affected. Use
        `execute_result()` to get both numbers without guessing."""
        compiled, args = self._compiler.compile(query, values)
        result: ExecuteResult = await self._run(
            self._backend.execute,
            compiled.sql,
            args,
            query=compiled,
            timeout=timeout,
            operation="execute",
        )
        return result.databases_value(self._backend.name)

    async def execute_result(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = UNSET,
    ) -> ExecuteResult:
        """Run a statement; return its `ExecuteResult(rowcount, lastrowid, value)`."""
        compiled, args = self._compiler.compile(query, values)
        result: ExecuteResult = await self._run(
            self._backend.execute,
            compiled.sql,
            args,
            query=compiled,
            timeout=timeout,
            operation="execute",
        )
        return result

    async def execute_many(
        self,
        query: Query,
        values: Sequence[Mapping[str, Any]],
        *,
        timeout: Timeout = UNSET,
    ) -> None:
        """Run a statement once per mapping in `values`; `timeout` bounds each batch sent
        (one per group of mappings with the same keys)."""
        if isinstance(values, Mapping) or not all(isinstance(v, Mapping) for v in values):
            raise ProgrammingError("execute_many() takes a list of mappings, one per execution")
        if not values:
            return
        groups = self._compiler.compile_many(query, values)
        run = self._backend.execute_many
        if len(groups) == 1:
            compiled, args_list = groups[0]
            await self._run(
                run,
                compiled.sql,
                args_list,
                query=compiled,
                timeout=timeout,
                operation="execute_many",
            )
            return
        async with self:  # one checkout for all groups
            for compiled, args_list in groups:
                await self._run(
                    run,
                    compiled.sql,
                    args_list,
                    query=compiled,
                    timeout=timeout,
                    operation="execute_many",
                )

    async def iterate(
        self,
        query: Query,
        values: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout = UNSET,
    ) -> AsyncIterator[Record]:
        """Stream the rows of a query with a server-side cursor where the backend has one.

        The connection is busy until the iteration ends: running another statement on it
        from inside the loop raises InterfaceError (use `fetch_all` or another task).
        `timeout` bounds each fetch of a batch of rows, not the whole iteration (the time
        your loop body takes does not count).
        """
        limit = self._limit(timeout)
        compiled, args = self._compiler.compile(query, values)
        async with self._statement() as raw:
            self._lock_owner = asyncio.current_task()  # the loop body runs holding the wire
            self._mark(compiled)
            seen = self._observe("iterate", compiled.sql, args)
            stream = self._backend.stream(raw, compiled.sql, args, _ITERATE_BATCH)
            try:
                while True:
                    try:
                        columns, rows = await self._call(raw, anext, (stream,), limit)
                    except StopAsyncIteration:
                        break
                    if seen is not None:
                        seen.fetched(len(rows))
                    for record in self._records(compiled, columns, rows):
                        yield record
            except BaseException as exc:
                if seen is not None and not isinstance(exc, GeneratorExit):
                    seen.error = exc  # leaving the loop early is no failure
                raise
            finally:
                await _aclose_quietly(stream)
                self._drop_if_closed(raw)
                if seen is not None:
                    seen.end()

    def _drop_if_closed(self, raw: Any) -> None:
        """Take back a connection the stream's close left dead (a MySQL stream left early is
        dropped rather than drained; a line lost mid-stream): a dead connection must not look
        like one holding a user's transaction, and a transaction on it is lost."""
        if self._pooled is None or self._pooled.raw is not raw or not self._backend.is_closed(raw):
            return
        self._invalidate()
        self._fail(
            ErrorScope.TRANSACTION,
            DisconnectionError("the connection was closed while leaving an iteration early"),
        )

    def _records(self, compiled: Compiled, columns: list[str], rows: list[Any]) -> list[Record]:
        if compiled.plain and self._native_rows:
            return rows  # the driver's own records already are asyncdb records
        return compiled.meta(columns).rows(rows)

    # -- transactions --------------------------------------------------------------------

    def transaction(self, *, force_rollback: bool = False, **options: Any) -> Transaction:
        """A transaction on this connection; see `Database.transaction`."""
        from ._transaction import Transaction

        return Transaction(lambda: self, force_rollback=force_rollback, **options)

    async def _begin(
        self, tx: Transaction, options: TransactionOptions, owns_turn: bool, reconnect: str | None
    ) -> int:
        """Open a transaction level for `tx`; return its depth (1 = outermost)."""
        if owns_turn:
            turn = self._turn
            if turn.busy or turn.waiters:
                await turn.acquire()
            else:
                turn.busy = True
            self._turn_owner = tx
        self._users += 1
        try:
            if not self._levels:
                gate = self._backend.transaction_gate(options)
                if gate is not None:
                    await self._pass_gate(gate)  # before a connection is held
                self._write_gate = self._backend.write_gate(options) if self._gate is None else None
            if self._pooled is None:
                await self._ensure_raw(reconnect)
            if self._levels:
                name: str | None = f"_asyncdb_sp_{next(_savepoint_ids)}"
                statements = [f"SAVEPOINT {name}"]
            else:
                name, statements = None, self._backend.begin_sql(options)
            for sql in statements:
                await self._command(sql, check_failed=True)
            self._levels.append(name)
            return len(self._levels)
        except BaseException:
            self._users -= 1
            self._give_turn(tx)
            if not self._levels:
                self._leave_gate()
            self._maybe_release()
            raise

    async def _pass_gate(self, gate: tuple[asyncio.Lock, float] | None) -> None:
        if gate is None:
            return
        lock, timeout = gate
        try:
            async with asyncio.timeout(timeout):  # never loses a cancel, unlike 3.11 wait_for
                await lock.acquire()
        except TimeoutError:
            raise ConflictError(
                f"{self._backend.name}: database is locked: another transaction of this process "
                f"kept the write lock for more than {timeout}s",
                backend=self._backend.name,
            ) from None
        self._gate = lock

    def _leave_gate(self) -> None:
        self._write_gate = None
        if self._gate is not None:
            gate, self._gate = self._gate, None
            gate.release()

    def _check_top(self, depth: int) -> None:
        if depth != len(self._levels):
            raise InterfaceError(
                f"transactions ended out of order: this one is level {depth} but level "
                f"{len(self._levels)} is still open on the connection; end the inner one first"
            )

    async def _end(self, tx: Transaction, depth: int, *, commit: bool) -> None:
        """Commit or roll back the level `depth` opened by `tx`. One frame for the level's
        end and the connection's bookkeeping: every wait on the wire resumes each frame."""
        try:
            name = self._levels[depth - 1]
            failed = self._failed
            try:
                if commit and failed is not None and failed[0] <= depth:
                    await self._rollback_level(depth, name)
                    raise self._refusal(committing=True)
                if commit:
                    await self._commit_level(depth, name)
                else:
                    await self._rollback_level(depth, name)
            finally:
                del self._levels[depth - 1 :]
                if self._failed is not None and (self._failed[0] >= depth or not self._levels):
                    self._failed = None
        finally:
            self._users -= 1
            self._give_turn(tx)
            if not self._levels:
                self._leave_gate()
            self._maybe_release()

    async def _commit_level(self, depth: int, name: str | None) -> None:
        if name is not None:
            await self._command(f"RELEASE SAVEPOINT {name}", check_failed=False)
            return
        pooled = self._pooled
        if pooled is None or self._backend.is_closed(pooled.raw):
            # Known dead before COMMIT was sent: certainly not committed, so retryable.
            self._invalidate()
            raise DisconnectionError(
                "the connection was lost before COMMIT was sent: the transaction was not committed",
                backend=self._backend.name,
            )
        try:
            status = await self._command("COMMIT", check_failed=False)
        except ReadOnlyError:
            # refused (the server was made read-only meanwhile): nothing was committed
            await self._rollback_quietly()
            raise
        except DisconnectionError as exc:
            raise CommitOutcomeUnknownError(
                "the connection was lost while COMMIT was in flight: the transaction may or "
                "may not have been committed",
                orig=exc.orig,
                backend=self._backend.name,
            ) from exc
        except DatabaseError:
            await self._rollback_quietly()
            raise
        if status == "ROLLBACK":  # PostgreSQL answers COMMIT of a failed transaction so
            raise TransactionAbortedError("the server rolled the transaction back at COMMIT")

    async def _rollback_level(self, depth: int, name: str | None) -> None:
        failed = self._failed
        if self._pooled is None:
            return  # the connection died: the server has rolled everything back
        if name is not None and failed is not None and failed[0] < depth:
            return  # the enclosing level is lost already, and this savepoint with it
        if name is None:
            await self._command("ROLLBACK", check_failed=False)
        else:
            await self._command(f"ROLLBACK TO SAVEPOINT {name}", check_failed=False)
            await self._command(f"RELEASE SAVEPOINT {name}", check_failed=False)

    async def _rollback_quietly(self) -> None:
        if self._pooled is None:
            return
        try:
            await self._backend.command(self._pooled.raw, "ROLLBACK")
        except asyncio.CancelledError:
            self._invalidate()  # cleanup may suppress errors, never a cancellation
            raise
        except Exception:
            self._invalidate()

    def _give_turn(self, tx: Transaction) -> None:
        if self._turn_owner is tx:
            self._turn_owner = None
            self._turn.release()

    # -- the wire --------------------------------------------------------------------------

    def _command(self, sql: str, *, check_failed: bool) -> Awaitable[str | None]:
        """One of asyncdb's own transaction commands. Not a coroutine of its own: it hands
        back `_run`'s, so every wait on the wire resumes one frame less."""
        if check_failed and self._failed is not None:
            raise self._refusal()
        return self._run(self._backend.command, sql, check_failed=False)

    def _limit(self, timeout: Timeout) -> float | None:
        """The time limit of one call: `timeout` as given, else the database's default."""
        if timeout is UNSET:
            return self._pool.query_timeout
        return check_timeout("timeout", timeout)

    async def _run(
        self,
        op: Callable[..., Awaitable[T]],
        *args: Any,
        check_failed: bool = True,
        query: Compiled | None = None,
        timeout: Timeout = None,
        operation: str = "command",
    ) -> T:
        """Run a driver call; `query` is the compiled statement (None for asyncdb's own
        transaction commands, which leave no session state behind and are never bounded:
        a COMMIT cut short would leave its outcome unknown). `operation` names the public
        method for the hooks."""
        if timeout is None:  # asyncdb's own commands: never bounded
            limit = None
        elif timeout is UNSET:  # _limit(), inline: not given is the common case
            limit = self._pool.query_timeout
        else:
            limit = self._limit(timeout)
        if check_failed and self._failed is not None:
            raise self._refusal()
        if query is not None and query.write and self._write_gate is not None and self._levels:
            # A deferred transaction's first write: join the writers' line before sending it.
            await self._pass_gate(self._write_gate)
            self._write_gate = None
        hooks = self._pool.hooks
        observed = hooks.queries or logger.isEnabledFor(logging.DEBUG)
        try:
            lock, owner = self._lock, self._turn_owner
            if (
                not lock.busy
                and not lock.waiters
                and (owner is None or owner in _STACKS.get().get(self, ()))
            ):
                # _Statement's common case, inline (no object, no two coroutines per
                # statement): the wire is free and no other context's transaction owns it
                self._users += 1
                lock.busy = True
                pooled = self._pooled
                if pooled is None:
                    try:
                        pooled = await self._ensure_raw_locked()
                    except BaseException:
                        self._leave_wire()
                        raise
                raw = pooled.raw
            else:
                raw = await _Statement(self).__aenter__()  # not kept on self: no cycle
            try:
                if (query is not None and query.dirty) or self._pool.reset_always:
                    self._mark(None)
                if observed:
                    return await self._run_observed(raw, op, args, limit, operation)
                if limit is not None:
                    return await self._call(raw, op, (raw, *args), limit)
                try:  # _call's unbounded case, inline: one frame less on the hot path
                    return await op(raw, *args)
                except BaseException as exc:
                    raise self._on_error(exc) from exc
            finally:
                self._leave_wire()
        except DataError as exc:
            if query is not None and query.names:
                _name_arguments(exc, query.names)
            raise

    def _leave_wire(self) -> None:
        """The end of a statement: free the wire (to the first waiter, if any) and give the
        connection back to the pool if nothing else holds it."""
        self._lock_owner = None
        lock = self._lock
        lock.busy = False
        if lock.waiters:
            lock.wake_next()
        self._users -= 1
        if self._users == 0:
            self._maybe_release()

    async def _call(
        self, raw: Any, op: Callable[..., Awaitable[T]], args: tuple[Any, ...], limit: float | None
    ) -> T:
        """Await one driver call, within `limit` seconds; a driver error comes out as the
        asyncdb error, a timeout as QueryTimeoutError after the server-side cancel."""
        if limit is None:
            try:
                return await op(*args)
            except StopAsyncIteration:
                raise
            except BaseException as exc:
                raise self._on_error(exc) from exc
        # asyncio.timeout, never wait_for: on 3.11 wait_for may lose a cancellation.
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await op(*args)
        except StopAsyncIteration:
            raise
        except TimeoutError as exc:
            if not deadline.expired():
                raise self._on_error(exc) from exc  # the driver's own timeout
            raise await self._on_timeout(raw, limit) from None
        except BaseException as exc:
            raise self._on_error(exc) from exc

    async def _on_timeout(self, raw: Any, limit: float) -> QueryTimeoutError:
        """The call ran out of time and was interrupted: stop the statement on the server,
        keep the connection if the backend confirms it is back in a known state."""
        try:
            kept = await self._backend.cancel(raw)
        except asyncio.CancelledError:
            self._on_error(asyncio.CancelledError())  # cancelled while cancelling: discard
            raise
        except Exception:
            kept = False
        name = self._backend.name
        error = QueryTimeoutError(
            f"{name}: the query ran longer than its timeout of {limit:g}s and was cancelled",
            backend=name,
        )
        if not kept:
            logger.info("%s: a timed-out query's connection is not in a known state; closed", name)
            self._invalidate()
        self._fail(ErrorScope.SAVEPOINT if kept else ErrorScope.TRANSACTION, error)
        return error

    async def _run_observed(
        self,
        raw: Any,
        op: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        limit: float | None,
        operation: str,
    ) -> T:
        """`_run` with the query logged at DEBUG and the query hooks called."""
        seen = _Observed(self, operation, args[0], args[1] if len(args) > 1 else None)
        try:
            result = await self._call(raw, op, (raw, *args), limit)
        except BaseException as exc:
            seen.error = exc
            seen.end()
            raise
        if isinstance(result, ExecuteResult):
            seen.rows = result.rowcount
        elif isinstance(result, tuple):  # fetch: (columns, rows)
            seen.rows = len(result[1])
        else:
            seen.rows = None
        seen.end()
        return result

    def _observe(self, operation: str, sql: str, params: Any) -> _Observed | None:
        """Start observing a statement if anyone watches (query hooks, DEBUG log)."""
        if self._pool.hooks.queries or logger.isEnabledFor(logging.DEBUG):
            return _Observed(self, operation, sql, params)
        return None

    def _statement(self) -> _Statement:
        return _Statement(self)

    def _on_error(self, exc: BaseException) -> BaseException:
        """Act on a failed driver call; return the exception the caller should see."""
        raw = self._pooled.raw if self._pooled is not None else None
        failure = self._backend.classify(exc, raw) if isinstance(exc, Exception) else None
        if failure is None:
            if not isinstance(exc, Exception):
                # Cancelled or interrupted mid-call: the protocol state is unknown.
                self._invalidate(interrupted=True)
                self._fail(ErrorScope.TRANSACTION, exc)
            return exc
        error = driver_error(self._backend, failure, exc)
        if failure.kind is ErrorKind.DISCONNECT:
            self._pool.hooks.emit("disconnect_detected", backend=self._backend.name, error=error)
            self._invalidate()
        if failure.scope is not ErrorScope.STATEMENT:
            self._fail(failure.scope, error)
        return error

    def _fail(self, scope: ErrorScope, error: BaseException) -> None:
        if not self._levels:
            return
        level = 1 if scope is ErrorScope.TRANSACTION else len(self._levels)
        if self._failed is None or level < self._failed[0]:
            self._failed = (level, error)

    def _refusal(self, *, committing: bool = False) -> DatabaseError:
        """The error for a statement (or COMMIT) in a transaction that has failed."""
        cause = self._failed[1] if self._failed is not None else None
        lost = isinstance(cause, DisconnectionError) or not isinstance(cause, Exception)
        lost = lost and not isinstance(cause, ReadOnlyError)  # refused, the line is fine
        if committing:
            what = "cannot commit: the connection was lost" if lost else "cannot commit"
            message = f"{what}; an earlier statement failed, so the transaction was rolled back"
        elif lost:
            message = (
                "the connection of this transaction was lost or interrupted; leave the "
                "transaction block (or roll it back) before running more statements"
            )
        else:
            message = (
                "the transaction is in an error state after an earlier failed statement; "
                "roll it back (or back to its savepoint) before running more statements"
            )
        cls = DisconnectionError if lost else TransactionAbortedError
        error = cls(message, backend=self._backend.name)
        error.__cause__ = cause
        return error

    # -- PostgreSQL: COPY and NOTIFY ---------------------------------------------------------

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
        """COPY `records` (tuples, one per row, in column order) into a table with binary
        COPY; return the number of rows copied. PostgreSQL only. `timeout` bounds the whole
        COPY. A record that cannot be sent raises DataError naming it; what the records
        iterable itself raises reaches you as raised."""
        backend = self._capable("copy_records_to_table", "COPY")
        table, names, schema = check_names("copy_records_to_table", table, columns, schema_name)
        call = functools.partial(
            backend.copy_records_to_table,
            table=table,
            records=records,
            columns=names,
            schema_name=schema,
            where=where,
        )
        return await self._copy(
            call,
            f"COPY {target_sql(table, names, schema)} FROM STDIN",
            timeout,
            "copy_records_to_table",
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
        """COPY data into a table from `source`: bytes, a binary file object or an async
        iterable of bytes, in the format the COPY options say (`format="csv"`, `header=True`,
        `delimiter`, `null`, ...; text by default). Return the number of rows copied."""
        backend = self._capable("copy_to_table", "COPY")
        check_copy_options("copy_to_table", options, COPY_IN_OPTIONS)
        table, names, schema = check_names("copy_to_table", table, columns, schema_name)
        call = functools.partial(
            backend.copy_to_table,
            table=table,
            source=source,
            columns=names,
            schema_name=schema,
            options=options,
        )
        return await self._copy(
            call, f"COPY {target_sql(table, names, schema)} FROM STDIN", timeout, "copy_to_table"
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
        """COPY the rows of a query (`:name` parameters, or a Core select) to `output`: a
        binary file object or an async callable taking bytes, in the format the COPY options
        say (`format="csv"`, `header=True`, ...). Return the number of rows copied."""
        backend = self._capable("copy_from_query", "COPY")
        check_copy_options("copy_from_query", options, COPY_OUT_OPTIONS)
        if values is not None and not isinstance(values, Mapping):
            raise ProgrammingError(
                "copy_from_query() takes its parameters as a mapping of :name values, "
                f"got {type(values).__name__}"
            )
        compiled, args = self._compiler.compile(query, values)
        call = functools.partial(
            backend.copy_from_query, sql=compiled.sql, args=args, output=output, options=options
        )
        return await self._copy(
            call, f"COPY ({compiled.sql}) TO STDOUT", timeout, "copy_from_query", compiled
        )

    async def notify(
        self, channel: str, payload: str | None = None, *, timeout: Timeout = UNSET
    ) -> None:
        """Send a notification on `channel` (pg_notify) through this connection: inside a
        transaction it is delivered at COMMIT, and not at all after a rollback."""
        self._capable("listen", "LISTEN/NOTIFY")
        check_channel(channel)
        if payload is not None and not isinstance(payload, str):
            raise ProgrammingError(f"a notification payload is a str, got {type(payload).__name__}")
        await self.execute(
            "SELECT pg_notify(:channel, :payload)",
            {"channel": channel, "payload": payload or ""},
            timeout=timeout,
        )

    def _capable(self, method: str, feature: str) -> Any:
        """The backend, if it has `method`; else the InterfaceError naming what is needed."""
        if getattr(self._backend, method, None) is None:
            raise InterfaceError(
                f"{feature} needs PostgreSQL; this database is {self._backend.name}",
                backend=self._backend.name,
            )
        return self._backend

    async def _copy(
        self,
        call: Callable[[Any], Awaitable[int]],
        description: str,
        timeout: Timeout,
        operation: str,
        query: Compiled | None = None,
    ) -> int:
        """Run one COPY as a statement (checkout, wire lock, classification, timeout,
        cancellation). What the caller's own code raised mid-COPY is re-raised as it is,
        after the transaction level is marked failed (the server failed the COPY)."""

        async def op(raw: Any, _description: str) -> int:
            self._lock_owner = asyncio.current_task()  # callbacks run holding the wire
            try:
                return await call(raw)
            except CallbackFailed as exc:
                lost = self._backend.is_closed(raw)
                if lost:
                    self._invalidate()
                cause: BaseException = (
                    DisconnectionError("the connection was closed after a COPY callback failed")
                    if lost
                    else exc.error
                )
                self._fail(ErrorScope.TRANSACTION if lost else ErrorScope.SAVEPOINT, cause)
                raise

        try:
            return await self._run(
                op, description, query=query, timeout=timeout, operation=operation
            )
        except CallbackFailed as exc:
            raise exc.error from None


_ARGUMENT = re.compile(r"query argument \$(\d+)")


def _name_arguments(error: DataError, names: tuple[str, ...]) -> None:
    """asyncpg encodes parameters itself and names them by position (`$2`): add the name the
    caller used (`:price`), so the message says which value was wrong."""
    message = str(error)

    def named(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        if 0 <= index < len(names):
            return f"query parameter :{names[index]} ({match.group(0)})"
        return match.group(0)

    renamed = _ARGUMENT.sub(named, message)
    if renamed != message:
        error.args = (renamed,)


_query_ids = itertools.count(1)


class _Observed:
    """One statement, or one whole iteration, as the query log and hooks see it:
    `query_start` when created, then the DEBUG line and `query_end` at `end()`."""

    __slots__ = ("_conn", "_details", "_params", "_start", "error", "rows")

    def __init__(self, conn: Connection, operation: str, sql: str, params: Any) -> None:
        pooled = conn._pooled
        self._conn, self._params = conn, params
        self._details: dict[str, Any] = {
            "backend": conn._backend.name,
            "sql": sql,
            "operation": operation,
            "query_id": next(_query_ids),
            "connection_id": pooled.id if pooled is not None else None,
            "transaction_depth": len(conn._levels),
        }
        self.error: BaseException | None = None
        self.rows: int | None = 0
        conn._pool.hooks.emit("query_start", **self._details)
        self._start = time.perf_counter()

    def fetched(self, rows: int) -> None:
        self.rows = (self.rows or 0) + rows

    def end(self) -> None:
        duration = time.perf_counter() - self._start
        pool, details = self._conn._pool, self._details
        params = self._params
        shown = params if pool.log_parameters and params is not None else "[parameters hidden]"
        logger.debug("%s %.3f ms %s %s", details["backend"], duration * 1000, details["sql"], shown)
        rows = None if self.error is not None else self.rows
        pool.hooks.emit("query_end", **details, duration=duration, error=self.error, rowcount=rows)


class _Statement:
    """Checkout + wire lock for one statement (or one whole iteration)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def __aenter__(self) -> Any:
        conn = self._conn
        owner = conn._turn_owner
        # transaction_stack(conn), inline: this runs for every statement in a transaction
        if owner is not None and owner not in _STACKS.get().get(conn, ()):
            # Another context's transaction owns this shared connection: wait for it to end
            # rather than run inside it.
            async with conn._turn:
                pass
        conn._users += 1
        lock = conn._lock
        if lock.busy or lock.waiters:
            try:
                await conn._lock_for(asyncio.current_task())
            except BaseException:
                conn._users -= 1
                conn._maybe_release()
                raise
        else:
            lock.busy = True  # free: WireLock's fast path, inline
        pooled = conn._pooled  # held already: the common case inside a transaction or block
        if pooled is not None:
            return pooled.raw
        try:
            return (await conn._ensure_raw_locked()).raw
        except BaseException:
            await self.__aexit__()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._conn._leave_wire()


async def _aclose_quietly(stream: Any) -> None:
    try:
        await stream.aclose()
    except Exception:  # cleanup may suppress errors, never a cancellation
        pass
