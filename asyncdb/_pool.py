"""Pool: a bounded set of raw connections shared by all tasks of one Database.

Waiters are served first come, first served. A connection comes back through `release`,
which is synchronous so that no cancellation can interrupt it: a connection whose state is
unknown is terminated there and its slot handed to the next waiter. The pool notices a
fork() and abandons, without any I/O, every connection the child inherited.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
import os
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ._backoff import Backoff
from ._errors import driver_error
from ._exceptions import InterfaceError, PoolTimeout
from ._hooks import Hooks
from .backends.base import Backend, ErrorKind, ErrorScope, Failure

__all__ = [
    "CLIENT_EXCEPTIONS",
    "RECONNECT_MODES",
    "RESET_MODES",
    "OnConnect",
    "Pool",
    "PooledConnection",
    "check_options",
    "check_timeout",
    "fork_generation",
]

# fail_fast: one connect attempt, then the error (web requests). backoff: keep trying with
# exponential back-off and jitter until reconnect_timeout (scripts and workers).
RECONNECT_MODES = ("fail_fast", "backoff")
# auto: reset a connection whose statements may have changed session state. always: reset
# every connection that ran anything. never: internal, force_rollback's shared connection.
RESET_MODES = ("auto", "always")

logger = logging.getLogger("asyncdb.pool")

# Everything that may interrupt a driver call half-way, named once (psycopg's idea).
CLIENT_EXCEPTIONS = (Exception, asyncio.CancelledError)

_fork_generation = 0
# Connections inherited across fork() are kept referenced for the life of the child so that
# their finalizers never run: a finalizer would close the shared socket through the parent's
# event loop (its epoll set is shared too).
_ABANDONED: list[Any] = []
_pool_names = itertools.count(1)
_connection_ids = itertools.count(1)
_RESET_TIMEOUT = 30.0  # seconds for a session reset (and on_connect's re-run) to finish

OnConnect = Callable[[Any], Awaitable[Any]]


class _OnConnectFailed(Exception):
    """on_connect raised: a bug in the callback, not a disconnect to retry."""


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


def fork_generation() -> int:
    """A number that changes in a child process after each fork()."""
    return _fork_generation


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def check_options(*, min_size: int, max_size: int, reconnect: str) -> None:
    """Reject pool options that cannot work, naming the option (at Database(), not later)."""
    if max_size < 1:
        raise InterfaceError(f"max_size must be at least 1, got {max_size}")
    if min_size < 0 or min_size > max_size:
        raise InterfaceError(
            f"min_size must be between 0 and max_size ({max_size}), got {min_size}"
        )
    if reconnect not in RECONNECT_MODES:
        raise InterfaceError(
            f"reconnect must be one of {', '.join(RECONNECT_MODES)}, got {reconnect!r}"
        )


def check_timeout(name: str, value: Any) -> float | None:
    """A time limit in seconds (a positive number, or a numeric string from the URL), or
    None for no limit; anything else is refused, naming the option."""
    if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        seconds = float(value)
    except (TypeError, ValueError):
        raise InterfaceError(f"{name} must be a number of seconds or None, got {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise InterfaceError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


class PooledConnection:
    """One raw connection and the facts the pool keeps about it."""

    __slots__ = (
        "__weakref__",
        "created",
        "dirty",
        "generation",
        "id",
        "last_used",
        "owner",
        "raw",
    )

    def __init__(self, raw: Any, lifetime: float | None) -> None:
        now = time.monotonic()
        self.raw = raw
        self.last_used = now
        # -5% jitter so that connections opened together are not all recycled together.
        self.created = now - (random.random() * 0.05 * lifetime if lifetime else 0.0)
        self.generation = _fork_generation
        # A statement may have changed session state: reset before anyone else gets it.
        self.dirty = False
        self.id = next(_connection_ids)  # for hooks: which server connection ran a statement
        # Set while lent out by a pool that lends other pools' connections (a router's role
        # pool): where it goes back to.
        self.owner: Any = None


class Pool:
    """Bounded pool of raw connections for one backend."""

    def __init__(
        self,
        backend: Backend,
        *,
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float | None = 30.0,
        max_lifetime: float | None = 3600.0,
        pre_ping_idle: float | None = 5.0,
        reconnect: str = "fail_fast",
        reconnect_timeout: float = 30.0,
        hooks: Hooks | None = None,
        log_parameters: bool = False,
        reset: str = "auto",
        on_connect: OnConnect | None = None,
        query_timeout: float | None = None,
    ) -> None:
        check_options(min_size=min_size, max_size=max_size, reconnect=reconnect)
        self.backend = backend
        self.name = f"pool-{next(_pool_names)}"
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self.max_lifetime = max_lifetime
        self.pre_ping_idle = pre_ping_idle
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self.hooks = hooks or Hooks()
        self.log_parameters = log_parameters
        self.reset = reset
        self.reset_always = reset == "always"
        self.on_connect = on_connect
        self.query_timeout = query_timeout  # the default of every query's `timeout=`
        self._idle: collections.deque[PooledConnection] = collections.deque()
        self._in_use: weakref.WeakSet[PooledConnection] = weakref.WeakSet()
        self._waiters: collections.deque[asyncio.Future[PooledConnection | None]] = (
            collections.deque()
        )
        self._size = 0  # open connections plus those being opened
        self._closed = False
        self._generation = _fork_generation
        self._stats = collections.Counter[str]()
        self._recovering: set[asyncio.Task[None]] = set()
        # The event loop the connections belong to: their sockets (or, for SQLite, the
        # futures their thread answers) are bound to it.
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"<Pool {self.name} {self.backend.name} size={self._size}/{self.max_size}>"

    async def open(self) -> None:
        """Open `min_size` connections; a connect error is raised as an asyncdb error."""
        self._check_fork()
        self._loop = asyncio.get_running_loop()
        while self._size < self.min_size:
            self._size += 1
            try:
                self._idle.append(await self._connect())
            except BaseException:
                self._size -= 1
                await self.close()  # the ones already opened are not left behind
                raise

    async def acquire(self, reconnect: str | None = None) -> PooledConnection:
        """Take a connection, waiting in line for one if the pool is at its size.

        `reconnect` overrides the pool's mode for the connections this call has to open."""
        if self._generation != _fork_generation:  # _check_fork's test, inline
            self._check_fork()
        if self._closed:
            raise InterfaceError(f"{self.name} is closed")
        loop = self._loop
        if loop is None or loop is not asyncio.get_running_loop():  # _check_loop's, inline
            self._check_loop()
        self._stats["requests"] += 1
        if self._idle and not self._waiters:
            conn: PooledConnection | None = self._idle.pop()
        elif self._size < self.max_size and not self._waiters:
            self._size += 1
            conn = None
        else:
            conn = await self._wait()
        if conn is not None and self._ready(conn):
            ready = conn  # nothing to do: no _check_out coroutine
        else:
            ready = await self._check_out(conn, reconnect or self.reconnect)
        self._in_use.add(ready)
        return ready

    def _ready(self, conn: PooledConnection) -> bool:
        """Whether an idle connection can be handed out as it is: not past its lifetime, not
        known dead, not idle long enough to need a ping (else `_check_out` sees to it)."""
        lifetime, ping = self.max_lifetime, self.pre_ping_idle
        if lifetime is None and ping is None:
            return not self.backend.is_closed(conn.raw)
        now = time.monotonic()
        return (
            (lifetime is None or now - conn.created <= lifetime)
            and (ping is None or now - conn.last_used <= ping)
            and not self.backend.is_closed(conn.raw)
        )

    def release(
        self, conn: PooledConnection, *, discard: bool = False, interrupted: bool = False
    ) -> None:
        """Give a connection back; `discard=True` when its state is unknown, `interrupted=True`
        when a call on it was cancelled half-way. Never blocks."""
        if self._generation != _fork_generation:  # _check_fork's test, inline
            self._check_fork()
        self._in_use.discard(conn)
        if conn.generation != _fork_generation:
            self._abandon(conn)
            return
        if not self._in_own_loop():
            self._orphan(conn)
            return
        if self.reset == "never":
            conn.dirty = False
        if interrupted and not self._closed and self.backend.can_recover:
            # An in-process database can be brought back to a known state instead (and an
            # in-memory one must: its data lives in that connection only).
            self._restore(conn, recover=True)
            return
        if interrupted and not self._closed:
            # A cancelled task's statement may still run on the server (closing the socket
            # does not stop it): cancel it there in the background, then close. The slot is
            # free at once; the cancelled task does not wait for any of it.
            self._size -= 1
            self._stats["invalidated"] += 1
            self.hooks.emit("invalidate", backend=self.backend.name, pool=self.name)
            self._track(self._cancel_then_terminate(conn.raw))
            self._grant(None)
            return
        if discard or interrupted or self._closed or self.backend.is_closed(conn.raw):
            self._drop(conn)
            self._grant(None)
            return
        if conn.dirty:
            # Reset in the background: release stays synchronous (no cancellation can cut
            # it short) and the connection is nobody's until it is clean again.
            self._restore(conn, recover=False)
            return
        conn.last_used = time.monotonic()
        self._grant(conn)

    def _restore(self, conn: PooledConnection, *, recover: bool) -> None:
        self._track(self._recover(conn, recover=recover))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        """Run pool work in the background; close() waits for it."""
        task = asyncio.get_running_loop().create_task(work)
        self._recovering.add(task)
        task.add_done_callback(self._recovering.discard)

    async def _cancel_then_terminate(self, raw: Any) -> None:
        try:
            await self.backend.cancel(raw)  # bounded by the backend
        except CLIENT_EXCEPTIONS:
            logger.debug("%s: server-side cancel failed", self.name, exc_info=True)
        finally:
            try:
                self.backend.terminate(raw)
            except Exception:
                logger.debug("%s: error while terminating a connection", self.name, exc_info=True)

    async def _recover(self, conn: PooledConnection, *, recover: bool = True) -> None:
        try:
            if recover:
                await self.backend.recover(conn.raw)
                self._stats["recovered"] += 1
            if conn.dirty:
                await self._reset(conn)
        except CLIENT_EXCEPTIONS:
            what = "an interrupted" if recover else "a used"
            logger.warning("%s: could not bring back %s connection; closed", self.name, what)
            self._drop(conn)
            self._grant(None)
            return
        if self._closed:  # close() is waiting for us: close gracefully, as it would
            self._size -= 1
            await self._close_quietly(conn.raw)
            return
        conn.last_used = time.monotonic()
        self._grant(conn)

    async def _reset(self, conn: PooledConnection) -> None:
        """Undo all session state, then redo on_connect's; raise if any of it fails."""
        raw = conn.raw
        try:
            # bounded: a server that stops answering must not keep the slot forever
            async with asyncio.timeout(_RESET_TIMEOUT):
                conn.raw = await self.backend.reset(raw)
                if self.on_connect is not None:
                    await self.on_connect(conn.raw)
        except BaseException:
            await self._close_quietly(conn.raw)
            if conn.raw is not raw:
                await self._close_quietly(raw)
            raise
        conn.dirty = False
        self._stats["resets"] += 1
        self.hooks.emit("reset", backend=self.backend.name, pool=self.name)

    async def close(self) -> None:
        """Close idle connections gracefully; connections in use are closed on release."""
        self._check_fork()
        self._closed = True
        if not self._in_own_loop():
            # Closing them gracefully would need their own loop: let them go without it.
            idle, self._idle = list(self._idle), collections.deque()
            for conn in idle:
                self._orphan(conn)
            return
        if self._recovering:
            await asyncio.gather(*self._recovering, return_exceptions=True)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(InterfaceError(f"{self.name} was closed while waiting"))
        idle, self._idle = list(self._idle), collections.deque()
        for conn in idle:
            self._size -= 1
            try:
                async with asyncio.timeout(5):
                    await self.backend.close(conn.raw)
            except asyncio.CancelledError:
                self.backend.terminate(conn.raw)
                for rest in idle[idle.index(conn) + 1 :]:
                    self._size -= 1
                    self.backend.terminate(rest.raw)
                raise  # closing may suppress errors, never a cancellation
            except Exception:
                self.backend.terminate(conn.raw)

    def stats(self) -> dict[str, int]:
        """Size, idle, in use and waiting now; created, invalidated and requests so far."""
        self._check_fork()
        return {
            "size": self._size,
            "max_size": self.max_size,
            "idle": len(self._idle),
            "in_use": len(self._in_use),
            "waiting": sum(1 for w in self._waiters if not w.done()),
            "created": self._stats["created"],
            "invalidated": self._stats["invalidated"],
            "recovered": self._stats["recovered"],
            "resets": self._stats["resets"],
            "requests": self._stats["requests"],
        }

    async def _wait(self) -> PooledConnection | None:
        waiter: asyncio.Future[PooledConnection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns the connection when it
            # arrives in the same loop turn as a cancel, and the cancellation is lost.
            async with asyncio.timeout(self.acquire_timeout):
                return await waiter
        except TimeoutError:
            waiting = sum(1 for w in self._waiters if not w.done())
            raise PoolTimeout(
                f"no connection free in {self.name} after {self.acquire_timeout}s "
                f"(max_size={self.max_size}, in use={len(self._in_use)}, "
                f"{waiting} other tasks waiting)"
            ) from None
        except BaseException:
            # Served just as we were cancelled: pass the connection (or slot) on.
            if waiter.done() and not waiter.cancelled():
                served = waiter.result()
                if served is None:
                    self._size -= 1  # give back the slot reserved for us
                self._grant(served)
            raise
        finally:
            if waiter.cancelled():  # timed out or cancelled: leave the line (served ones left it)
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    async def _check_out(self, conn: PooledConnection | None, reconnect: str) -> PooledConnection:
        """Make a connection fit for use: open one for a free slot (None), recycle an old
        one, replace a dead one, pre-ping one that sat idle."""
        try:
            if conn is None:
                return await self._connect(reconnect)
            now = time.monotonic()
            if self.max_lifetime is not None and now - conn.created > self.max_lifetime:
                self._drop(conn, invalidated=False)
                self._size += 1
                return await self._connect(reconnect)
            if self.backend.is_closed(conn.raw):
                self._drop(conn)
                self._size += 1
                return await self._connect(reconnect)
            if self.pre_ping_idle is not None and now - conn.last_used > self.pre_ping_idle:
                await self._ping_or_replace(conn, reconnect)
            return conn
        except BaseException:
            if conn is not None:
                self.backend.terminate(conn.raw)
            self._size -= 1
            self._grant(None)
            raise

    async def _ping_or_replace(self, conn: PooledConnection, reconnect: str) -> None:
        try:
            await self.backend.ping(conn.raw)
        except Exception as exc:
            # Any ping failure (a disconnect, a cancel hitting the ping, ...) is a reason to
            # replace the connection; a raw driver error must never reach the caller.
            failure = self.backend.classify(exc, conn.raw)
            what = "a dead" if failure and failure.kind is ErrorKind.DISCONNECT else "a failing"
            logger.info("%s: pre-ping found %s connection; reconnecting", self.name, what)
            self.backend.terminate(conn.raw)
            self._stats["invalidated"] += 1
            fresh = await self._connect(reconnect)
            conn.raw, conn.created, conn.id = fresh.raw, fresh.created, fresh.id

    async def _connect(self, reconnect: str | None = None) -> PooledConnection:
        backoff = None
        if (reconnect or self.reconnect) == "backoff":
            backoff = Backoff(self.reconnect_timeout)
        while True:
            start = time.perf_counter()
            try:
                raw = await self._connect_shielded()
            except _OnConnectFailed as exc:
                raise InterfaceError(
                    f"{self.name}: on_connect failed: {type(exc.__cause__).__name__}: "
                    f"{exc.__cause__}"
                ) from exc.__cause__
            except Exception as exc:
                failure = self.backend.classify(exc, None)
                if failure is None:
                    failure = Failure(ErrorKind.DISCONNECT, ErrorScope.TRANSACTION)
                error = driver_error(self.backend, failure, exc)
                delay = backoff.next_delay() if backoff is not None else None
                if failure.kind is not ErrorKind.DISCONNECT or delay is None:
                    raise error from exc
                logger.warning(
                    "%s: cannot connect (%s); retrying in %.2fs", self.name, error, delay
                )
                await asyncio.sleep(delay)
                continue
            self._stats["created"] += 1
            conn = PooledConnection(raw, self.max_lifetime)
            self.hooks.emit(
                "connect",
                backend=self.backend.name,
                pool=self.name,
                duration=time.perf_counter() - start,
                connection_id=conn.id,
            )
            logger.debug("%s: connected", self.name)
            return conn

    async def _connect_shielded(self) -> Any:
        """Connect; if the caller is cancelled meanwhile, let the handshake finish (drivers
        leave half-done handshakes behind badly) and keep the connection for the pool."""
        attempt = asyncio.ensure_future(self._open_raw())
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(self._adopt)
            raise

    async def _open_raw(self) -> Any:
        raw = await self.backend.connect()
        if self.on_connect is not None:
            try:
                await self.on_connect(raw)
            except BaseException as exc:
                await self._close_quietly(raw)  # half set up: nobody may use it
                if isinstance(exc, Exception):
                    raise _OnConnectFailed() from exc
                raise
        return raw

    async def _close_quietly(self, raw: Any) -> None:
        """Close gracefully (so no driver thread outlives us), or abort if that fails."""
        if self.backend.is_closed(raw):
            return
        try:
            await asyncio.wait_for(self.backend.close(raw), 5)
        except CLIENT_EXCEPTIONS:
            self.backend.terminate(raw)

    def _adopt(self, attempt: asyncio.Future[Any]) -> None:
        if attempt.cancelled() or attempt.exception() is not None:
            return
        self._stats["created"] += 1
        conn = PooledConnection(attempt.result(), self.max_lifetime)
        if self._closed or self._size >= self.max_size or conn.generation != self._generation:
            self.backend.terminate(conn.raw)
            return
        self._size += 1
        self._grant(conn)

    def _grant(self, conn: PooledConnection | None) -> None:
        """Hand a connection (or, with None, a free slot) to the first live waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                if conn is None:
                    self._size += 1  # the slot is reserved for that waiter's connect
                waiter.set_result(conn)
                return
        if conn is not None:
            if self._closed:
                self._drop(conn, invalidated=False)
            else:
                self._idle.append(conn)

    def _drop(self, conn: PooledConnection, *, invalidated: bool = True) -> None:
        self._size -= 1
        if invalidated:
            self._stats["invalidated"] += 1
            self.hooks.emit("invalidate", backend=self.backend.name, pool=self.name)
        try:
            self.backend.terminate(conn.raw)
        except Exception:
            logger.debug("%s: error while terminating a connection", self.name, exc_info=True)

    def _in_own_loop(self) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return True  # not called from a loop at all: nothing to compare
        return self._loop is None or self._loop is loop

    def _check_loop(self) -> None:
        """Refuse to hand out connections bound to another event loop (asyncpg and aiomysql
        fail half-way with a raw RuntimeError); drop the idle ones without sending anything."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._in_own_loop():
            return
        idle, self._idle = list(self._idle), collections.deque()
        for conn in idle:
            self._orphan(conn)
        raise InterfaceError(
            "this Database was connected in another event loop; connect it in the loop that uses it"
        )

    def _orphan(self, conn: PooledConnection) -> None:
        """Let go of a connection of another event loop: no I/O, no call on that loop."""
        self._size -= 1
        try:
            self.backend.orphan(conn.raw)
        except Exception:
            logger.debug("%s: error while dropping a connection", self.name, exc_info=True)

    def _abandon(self, conn: PooledConnection) -> None:
        self.backend.abandon(conn.raw)
        _ABANDONED.append(conn.raw)

    def _check_fork(self) -> None:
        if self._generation == _fork_generation:
            return
        # In a forked child: everything we hold belongs to the parent's sockets and loop.
        for conn in itertools.chain(self._idle, list(self._in_use)):
            self._abandon(conn)
        self._idle.clear()
        self._in_use = weakref.WeakSet()
        self._waiters.clear()
        self._size = 0
        self._generation = _fork_generation
        logger.debug("%s: fork detected; inherited connections abandoned", self.name)
