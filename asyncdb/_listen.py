"""LISTEN/NOTIFY: `async for note in db.listen("channel")` on a dedicated connection.

A listener never uses a pooled connection: LISTEN is session state that would reach the
next task, and a connection waiting for notifications would hold a pool slot forever. It
opens its own connection (same connect options, on_connect applied) when iteration starts
and closes it when iteration ends, however it ends: the loop finishes or breaks, the body
raises, the task is cancelled, `db.disconnect()` runs.

PostgreSQL does not queue notifications for a session that is gone: after a disconnect the
listener reconnects with exponential back-off, LISTENs again and then yields, for each
channel, a `Notification` with `missed=True`, so that the consumer knows to re-read whatever
state the notifications were about. It is yielded once LISTEN is active again, so state read
after it cannot miss a later change.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._backoff import Backoff
from ._errors import driver_error
from ._exceptions import DatabaseError, DisconnectionError, InterfaceError, ProgrammingError
from ._pool import Pool, _OnConnectFailed
from .backends.base import ErrorKind, ErrorScope, Failure

__all__ = ["Listener", "Notification", "check_channel"]

logger = logging.getLogger("asyncdb")

_MAX_CHANNEL_BYTES = 63  # NAMEDATALEN - 1: the server truncates longer names


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification: `channel`, `payload` ("" if none was sent) and `pid`, the server
    process that sent it. `missed=True` marks the notice a listener yields per channel after
    it had to reconnect: notifications sent meanwhile are lost (payload "", pid 0)."""

    channel: str
    payload: str
    pid: int
    missed: bool = False


def check_channel(channel: Any) -> str:
    """A channel name as LISTEN and pg_notify() take it (exact, case-sensitive)."""
    if not isinstance(channel, str) or not channel:
        raise ProgrammingError(f"a channel name is a non-empty str, got {channel!r}")
    if len(channel.encode()) > _MAX_CHANNEL_BYTES:
        raise ProgrammingError(
            f"channel name {channel[:20]!r}... is longer than {_MAX_CHANNEL_BYTES} bytes; "
            "PostgreSQL would truncate it"
        )
    return channel


@dataclass(frozen=True, slots=True)
class _Lost:
    raw: Any  # the connection that ended (a late report about an older one is ignored)


class _Closed:
    pass


_CLOSED = _Closed()


class Listener:
    """The async iterator `Database.listen()` returns.

    `async for note in db.listen("a", "b"):` connects at the first iteration; `async with
    db.listen("a") as notes:` connects (and LISTENs) on entering the block, so nothing sent
    after that is missed. `reconnects` counts the reconnections so far.
    """

    def __init__(
        self,
        pool: Pool,
        channels: Sequence[str],
        *,
        reconnect_timeout: float | None,
        ping_interval: float | None,
    ) -> None:
        if not channels:
            raise ProgrammingError("listen() needs at least one channel name")
        self._channels = tuple(dict.fromkeys(check_channel(c) for c in channels))
        for name, value in (
            ("reconnect_timeout", reconnect_timeout),
            ("ping_interval", ping_interval),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise ProgrammingError(
                    f"listen(): {name} must be a positive number or None, got {value!r}"
                )
        self._pool = pool
        self._backend: Any = pool.backend
        self._reconnect_timeout = (
            math.inf if reconnect_timeout is None else float(reconnect_timeout)
        )
        self._ping_interval = ping_interval
        self._queue: asyncio.Queue[Notification | _Lost | _Closed] = asyncio.Queue()
        self._raw: Any = None
        self._started = False
        self._closed = False
        self.reconnects = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._raw is not None else "idle"
        return f"<Listener {', '.join(self._channels)} {state}>"

    @property
    def channels(self) -> tuple[str, ...]:
        return self._channels

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> Listener:
        return self

    async def __anext__(self) -> Notification:
        if self._closed:
            raise StopAsyncIteration
        try:
            return await self._next()
        except BaseException:
            # Cancelled, failed for good, or closed: nothing of the listener stays open.
            self._shutdown()
            raise

    async def __aenter__(self) -> Listener:
        if not self._started and not self._closed:
            try:
                await self._start()
            except BaseException:
                self._shutdown()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening and close the connection (gracefully). Idempotent."""
        raw, self._raw = self._raw, None
        self._shutdown()
        if raw is not None and not self._backend.is_closed(raw):
            try:
                await asyncio.wait_for(self._backend.close(raw), 5)
            except Exception:
                self._backend.terminate(raw)

    def _shutdown(self) -> None:
        """Close at once, without I/O: after break, on cancellation, at disconnect()."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(_CLOSED)  # wakes an iteration waiting in another task
        raw, self._raw = self._raw, None
        if raw is not None:
            self._backend.terminate(raw)

    def __del__(self) -> None:
        # `break` out of `async for` drops the listener: its connection goes with it.
        raw = getattr(self, "_raw", None)
        if raw is not None:
            self._raw = None
            try:
                self._backend.terminate(raw)
            except Exception:  # the event loop may be gone already
                pass

    async def _next(self) -> Notification:
        if not self._started:
            await self._start()
        while True:
            if self._raw is None:
                await self._reconnect()
            item = await self._wait()
            if isinstance(item, Notification):
                return item
            if isinstance(item, _Closed):
                raise StopAsyncIteration
            if item.raw is not self._raw:
                continue  # about a connection already replaced
            raw, self._raw = self._raw, None
            if raw is not None:
                self._backend.terminate(raw)
            channels = ", ".join(self._channels)
            logger.warning("listener on %s: connection lost; reconnecting", channels)
            error = DisconnectionError(
                f"listener on {channels}: connection lost", backend=self._backend.name
            )
            self._pool.hooks.emit("disconnect_detected", backend=self._backend.name, error=error)

    async def _wait(self) -> Notification | _Lost | _Closed:
        """The next queued item; a `_Lost` when the connection fails its idle ping."""
        while True:
            if self._ping_interval is None:
                return await self._queue.get()
            try:
                async with asyncio.timeout(self._ping_interval):
                    return await self._queue.get()
            except TimeoutError:
                pass
            # Idle: a line cut without a FIN (a dead host, a dropped NAT entry) only shows
            # when something is sent on it.
            raw = self._raw
            try:
                async with asyncio.timeout(self._ping_timeout()):
                    await self._backend.ping(raw)
            except Exception:
                return _Lost(raw)

    def _ping_timeout(self) -> float:
        """A ping gets as long as a connect (the connect_timeout option, default 10 s)."""
        timeout = getattr(self._backend, "_connect_kwargs", {}).get("timeout", 10.0)
        return float(timeout)

    # -- connecting ----------------------------------------------------------------------------

    async def _start(self) -> None:
        self._started = True
        if self._pool.reconnect == "backoff":
            await self._connect_until(Backoff(self._pool.reconnect_timeout))
        else:
            await self._connect()

    async def _reconnect(self) -> None:
        await self._connect_until(Backoff(self._reconnect_timeout), missed=True)
        self.reconnects += 1

    async def _connect_until(self, backoff: Backoff, *, missed: bool = False) -> None:
        while True:
            if self._closed:  # db.disconnect() ran while we waited to retry
                raise StopAsyncIteration
            try:
                await self._connect(missed=missed)
                return
            except DisconnectionError as error:
                delay = backoff.next_delay()
                if delay is None:
                    raise DisconnectionError(
                        f"listener on {', '.join(self._channels)}: could not reconnect in time: "
                        f"{error}",
                        orig=error.orig,
                        backend=self._backend.name,
                    ) from error
                logger.warning("listener: cannot connect (%s); retrying in %.2fs", error, delay)
                await asyncio.sleep(delay)

    async def _connect(self, *, missed: bool = False) -> None:
        start = time.perf_counter()
        raw = await self._open()
        try:
            if self._closed:
                raise StopAsyncIteration
            if missed:
                # Queued before LISTEN, seen after it: nothing the consumer re-reads can be
                # older than the notifications it will get from now on.
                for channel in self._channels:
                    self._queue.put_nowait(Notification(channel, "", 0, missed=True))
            notified, lost = _callbacks(self._queue)
            await self._backend.listen(raw, self._channels, notified, lost)
        except BaseException as exc:
            self._backend.terminate(raw)
            if isinstance(exc, Exception) and not isinstance(
                exc, DatabaseError | StopAsyncIteration
            ):
                raise self._error(exc) from exc
            raise
        self._raw = raw
        self._pool.hooks.emit(
            "connect",
            backend=self._backend.name,
            pool=f"{self._pool.name} listener",
            duration=time.perf_counter() - start,
            connection_id=None,  # outside the pool: no pooled connection
        )

    async def _open(self) -> Any:
        """A new raw connection with on_connect applied, outside the pool. A cancellation
        while connecting lets the handshake finish, then closes what it opened."""
        attempt = asyncio.ensure_future(self._pool._open_raw())
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            attempt.add_done_callback(self._terminate_attempt)
            raise
        except _OnConnectFailed as exc:
            raise InterfaceError(
                f"{self._backend.name}: on_connect failed: {type(exc.__cause__).__name__}: "
                f"{exc.__cause__}"
            ) from exc.__cause__
        except Exception as exc:
            raise self._error(exc) from exc

    def _terminate_attempt(self, attempt: asyncio.Future[Any]) -> None:
        if not attempt.cancelled() and attempt.exception() is None:
            self._backend.terminate(attempt.result())

    def _error(self, exc: Exception) -> DatabaseError:
        failure = self._backend.classify(exc, None) or Failure(
            ErrorKind.DISCONNECT, ErrorScope.TRANSACTION
        )
        return driver_error(self._backend, failure, exc)


def _callbacks(
    queue: asyncio.Queue[Notification | _Lost | _Closed],
) -> tuple[Callable[[str, str, int], None], Callable[[Any], None]]:
    """The driver's callbacks. They hold the queue, not the listener: the driver's connection
    lives on in the event loop, and must not keep a dropped listener (and itself) alive."""

    def notified(channel: str, payload: str, pid: int) -> None:
        queue.put_nowait(Notification(channel, payload, pid))

    def lost(raw: Any) -> None:
        queue.put_nowait(_Lost(raw))

    return notified, lost
