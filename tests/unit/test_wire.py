"""WireLock, the per-statement lock: asyncio.Lock's guarantees (one holder, first come first
served, a cancelled waiter never strands the lock) with a flag test when it is free."""

from __future__ import annotations

import asyncio

import pytest

from asyncdb._wire import WireLock


async def test_free_lock_is_taken_without_waiting_and_released() -> None:
    lock = WireLock()
    assert lock.take() and lock.locked() and not lock.take()
    lock.release()
    assert not lock.locked() and lock.waiters is None  # no queue made without contention
    with pytest.raises(RuntimeError):
        lock.release()


async def test_waiters_are_served_in_arrival_order_and_newcomers_queue() -> None:
    lock, order = WireLock(), []
    await lock.acquire()

    async def user(name: str) -> None:
        async with lock:
            order.append(name)
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(user(n)) for n in "abc"]
    await asyncio.sleep(0)
    lock.release()
    # released with waiters queued: a newcomer must not jump the queue
    assert not lock.take()
    tasks.append(asyncio.create_task(user("d")))
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c", "d"] and not lock.locked()


async def test_a_cancelled_waiter_passes_the_lock_on() -> None:
    lock = WireLock()
    await lock.acquire()
    first = asyncio.create_task(lock.acquire())
    second = asyncio.create_task(lock.acquire())
    await asyncio.sleep(0)
    lock.release()  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs: `second` must get the lock
    await asyncio.sleep(0)
    await asyncio.wait_for(second, 5)
    assert first.cancelled() and lock.locked()
    lock.release()
    assert not lock.waiters and not lock.locked()
