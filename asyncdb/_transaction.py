"""Transaction: `async with`, decorator, or manual start/commit/rollback; nesting = savepoints."""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from ._backoff import Retry
from ._context import _STACKS, pop_transaction, push_transaction, transaction_stack
from ._exceptions import (
    CommitOutcomeUnknownError,
    ConflictError,
    DisconnectionError,
    InterfaceError,
    ReadOnlyError,
    Rollback,
)
from ._hooks import Hooks
from ._pool import check_options
from .backends.base import TransactionOptions

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Transaction"]

logger = logging.getLogger("asyncdb")

P = ParamSpec("P")
R = TypeVar("R")

_transaction_ids = itertools.count(1)


class Transaction:
    """A database transaction, or a savepoint when one is already open on the connection.

    ```python
    async with db.transaction():           # commit on success, roll back on error
        await db.execute(...)

    @db.transaction()                      # each call runs in its own transaction,
    async def create_user(name): ...       # on the calling task's connection

    tx = await db.transaction().start()    # manual
    await tx.rollback()
    ```
    Raising `asyncdb.Rollback` inside the block rolls back quietly.
    """

    def __init__(
        self,
        connection: Callable[[], Connection],
        *,
        force_rollback: bool = False,
        isolation: str | None = None,
        readonly: bool = False,
        retry: int | Retry | None = None,
        reconnect: str | None = None,
    ) -> None:
        self._get_connection = connection
        self._force_rollback = force_rollback
        self._options = TransactionOptions(isolation=isolation, readonly=readonly)
        self._retry = Retry(attempts=retry) if isinstance(retry, int) else retry
        self._reconnect = reconnect
        if reconnect is not None:
            check_options(min_size=0, max_size=1, reconnect=reconnect)
        self._connection: Connection | None = None
        self._depth = 0
        # force_rollback's outer transaction belongs to no context: tasks' transactions
        # must take turns inside it as if it were the server's own.
        self._detached = False
        self._seen: _Observed | None = None  # set while hooks watch this transaction
        self._attempt, self._retrying = 1, False  # retry= decorator: will a failure re-run?

    def __repr__(self) -> str:
        state = f"depth={self._depth}" if self._depth else "not started"
        return f"<Transaction {state}>"

    @property
    def is_active(self) -> bool:
        return self._depth > 0

    # -- the three ways to use it ------------------------------------------------------------

    def __aenter__(self) -> Coroutine[Any, Any, Transaction]:
        # start()'s coroutine itself, not awaited in a frame of our own: one frame less
        # resumed at every wait on the wire while the transaction opens
        if self._retry is not None:
            raise InterfaceError(
                "retry= needs the decorator form: a block cannot be run again, a function can"
            )
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._seen is not None:
            self._seen.cause = exc
        # _end directly rather than commit()/rollback(): one frame less per wait on the wire
        await self._end(commit=exc is None and not self._force_rollback)
        return isinstance(exc, Rollback)

    def __await__(self) -> Generator[Any, None, Transaction]:
        return self.start().__await__()

    def __call__(self, func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate a coroutine function: each call runs in a transaction of its own."""
        if not inspect.iscoroutinefunction(func):
            raise InterfaceError("transaction() decorates only 'async def' functions")

        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if self._retry is None or transaction_stack(self._get_connection()):
                # Nested in an outer transaction, a conflict or disconnect loses the outer
                # one too: only whoever owns the outermost transaction may retry.
                # The transaction runs in this frame (no helper coroutine resumed at every
                # wait on the wire).
                async with self._copy():
                    return await func(*args, **kwargs)
                return cast(R, None)  # the function raised Rollback: rolled back quietly
            return await self._run_with_retry(self._retry, func, *args, **kwargs)

        return wrapper

    async def _run_with_retry(
        self, retry: Retry, func: Callable[P, Awaitable[R]], *args: Any, **kwargs: Any
    ) -> R:
        attempt = 1
        while True:
            try:
                return await self._run_attempt(attempt, retry.attempts, func, args, kwargs)
            except CommitOutcomeUnknownError:
                raise  # it may have committed: running it again could do it twice
            except (ConflictError, DisconnectionError) as exc:
                if attempt >= retry.attempts:
                    raise
                if isinstance(exc, ReadOnlyError) and self._options.readonly:
                    raise  # a write in a transaction opened read-only: it would fail again
                delay = retry.delay(attempt)
                logger.info(
                    "transaction attempt %d failed (%s); retry in %.3fs", attempt, exc, delay
                )
                attempt += 1
                await asyncio.sleep(delay)

    async def _run_attempt(
        self,
        attempt: int,
        attempts: int,
        func: Callable[P, Awaitable[R]],
        args: Any,
        kwargs: Any,
    ) -> R:
        """One attempt of a `retry=` decorated call; the hooks learn which one it is."""
        tx = self._copy()
        tx._attempt, tx._retrying = attempt, attempt < attempts
        async with tx:
            return await func(*args, **kwargs)
        return cast(R, None)  # the function raised Rollback: rolled back quietly

    def _copy(self) -> Transaction:
        """A fresh, unstarted transaction with the same (already checked) options: one per
        call of a decorated function. Cheap, since it runs on every request."""
        copy = object.__new__(Transaction)
        copy.__dict__.update(self.__dict__)
        copy._retry = None  # the decorator retries; each attempt is a plain transaction
        copy._connection, copy._depth, copy._detached = None, 0, False
        copy._seen = None
        return copy

    # -- manual control ------------------------------------------------------------------

    def start(self) -> Coroutine[Any, Any, Transaction]:
        """Open the transaction (or a savepoint inside the current one) on the connection.
        (A coroutine: `await tx.start()`; without hooks watching, `_open`'s own.)"""
        if self._depth:
            raise InterfaceError("this transaction is already started; create a new one")
        connection = self._get_connection()
        hooks = connection._pool.hooks
        if hooks.transactions and not self._detached:  # force_rollback's is no one's
            return self._open_observed(hooks, connection)
        return self._open(connection)

    async def _open_observed(self, hooks: Hooks, connection: Connection) -> Transaction:
        self._seen = _Observed(hooks, connection, self)
        try:
            return await self._open(connection)
        except BaseException as exc:
            self._seen.end(None, exc, commit=False)
            self._seen = None
            raise

    async def _open(self, connection: Connection) -> Transaction:
        stack = _STACKS.get().get(connection, ())  # transaction_stack(), inline
        if stack and (self._options.isolation or self._options.readonly):
            raise InterfaceError("isolation and readonly apply to the outermost transaction only")
        if self._detached:
            self._depth = await connection._begin(self, self._options, False, self._reconnect)
            self._connection = connection
            return self
        push_transaction(connection, self)
        try:
            self._depth = await connection._begin(self, self._options, not stack, self._reconnect)
        except BaseException:
            pop_transaction(connection, self)
            raise
        self._connection = connection
        return self

    async def commit(self) -> None:
        """Commit (or release the savepoint). If a statement failed inside, roll back and
        raise TransactionAbortedError instead."""
        await self._end(commit=True)

    async def rollback(self) -> None:
        """Roll back (or roll back to the savepoint, keeping the outer transaction)."""
        await self._end(commit=False)

    async def _end(self, *, commit: bool) -> None:
        connection = self._connection
        if connection is None or not self._depth:
            raise InterfaceError("this transaction is not active (never started, or already ended)")
        stack = _STACKS.get().get(connection, ())  # transaction_stack(), inline
        if stack and stack[-1] is not self and self in stack:
            raise InterfaceError(
                "transactions ended out of order: end the innermost transaction first"
            )
        connection._check_top(self._depth)
        depth, self._depth = self._depth, 0
        seen, self._seen = self._seen, None
        if seen is not None:
            seen.ending(connection)
        try:
            await connection._end(self, depth, commit=commit)
        except BaseException as exc:
            if seen is not None:
                seen.end(depth, exc, commit=commit)
            raise
        else:
            if seen is not None:
                seen.end(depth, None, commit=commit)
        finally:
            pop_transaction(connection, self)
            self._connection = None


def _retryable(error: BaseException | None) -> bool:
    """Whether the `retry=` decorator runs the function again after this error."""
    return isinstance(error, (ConflictError, DisconnectionError)) and not isinstance(
        error, CommitOutcomeUnknownError
    )


class _Observed:
    """A transaction as the hooks see it: `transaction_start` when created,
    `transaction_end` with its outcome at `end()`."""

    __slots__ = ("_connection_id", "_details", "_hooks", "_retrying", "_start", "cause")

    def __init__(self, hooks: Hooks, connection: Connection, tx: Transaction) -> None:
        self._hooks, self._retrying = hooks, tx._retrying
        self._details: dict[str, Any] = {
            "backend": connection._backend.name,
            "transaction_id": next(_transaction_ids),
            "attempt": tx._attempt,
        }
        self._connection_id: int | None = None
        self.cause: BaseException | None = None  # the exception that left the block, if any
        hooks.emit("transaction_start", **self._details)
        self._start = time.perf_counter()

    def ending(self, connection: Connection) -> None:
        pooled = connection._pooled
        self._connection_id = pooled.id if pooled is not None else None

    def end(self, depth: int | None, error: BaseException | None, *, commit: bool) -> None:
        duration = time.perf_counter() - self._start
        cause = error if error is not None else self.cause
        if isinstance(cause, Rollback):
            cause = None  # a rollback asked for, not a failure
        if commit and error is None:
            outcome = "commit"
        elif isinstance(error, CommitOutcomeUnknownError):
            outcome = "unknown"
        elif self._retrying and _retryable(cause):
            outcome = "retry"
        else:
            outcome = "rollback"
        self._hooks.emit(
            "transaction_end",
            **self._details,
            depth=depth,
            duration=duration,
            connection_id=self._connection_id,
            outcome=outcome,
            error=cause,
        )
