"""WireLock: asyncio.Lock's guarantee (one holder, waiters served first come, first served)
at the cost of a flag test when nobody else wants it.

A connection takes it for every statement and every transaction, and in the common case
nobody competes: asyncio.Lock still costs a coroutine for `acquire()` and three calls for
`release()` there. Here the free case is an attribute test and two assignments the caller
does inline (`if lock.free(): ...` or the same test written out on the hot path), and the
queue of waiters exists only once someone has had to wait.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

__all__ = ["WireLock"]


class WireLock:
    """A first-come, first-served lock for one event loop. `busy` is True while held;
    `waiters` is None (or empty) while nobody waits, so the free test is
    `not lock.busy and not lock.waiters`."""

    __slots__ = ("busy", "waiters")

    def __init__(self) -> None:
        self.busy = False
        self.waiters: collections.deque[asyncio.Future[None]] | None = None

    def locked(self) -> bool:
        return self.busy

    def take(self) -> bool:
        """Take the lock if it is free and nobody waits for it; say whether it was taken."""
        if self.busy or self.waiters:
            return False
        self.busy = True
        return True

    async def acquire(self) -> None:
        """Wait for the lock, behind whoever waited first (as asyncio.Lock does)."""
        if not self.busy and not self.waiters:
            self.busy = True
            return
        if self.waiters is None:
            self.waiters = collections.deque()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            try:
                await waiter
            finally:
                self.waiters.remove(waiter)
        except asyncio.CancelledError:
            # handed the lock (or about to be) but cancelled: pass it to the next in line
            if not self.busy:
                self.wake_next()
            raise
        self.busy = True

    def release(self) -> None:
        if not self.busy:
            raise RuntimeError("WireLock is not held")
        self.busy = False
        if self.waiters:
            self.wake_next()

    def wake_next(self) -> None:
        """Hand the lock to the first waiter (also called by a release written inline)."""
        waiters = self.waiters
        if waiters:
            first = waiters[0]
            if not first.done():
                first.set_result(None)

    async def __aenter__(self) -> None:
        if not self.busy and not self.waiters:
            self.busy = True
            return
        await self.acquire()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.release()
