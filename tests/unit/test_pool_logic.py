"""Pool bookkeeping under cancellation, with a fake backend (pure logic: no server)."""

from __future__ import annotations

import asyncio
import random
from typing import Any, ClassVar

import pytest

from asyncdb import PoolTimeout
from asyncdb._pool import Pool
from asyncdb.backends.base import Failure, TransactionOptions


class FakeRaw:
    def __init__(self) -> None:
        self.closed = False


class FakeBackend:
    """Connections that take a moment to open; nothing else."""

    name: ClassVar[str] = "fake"
    is_memory = False
    can_recover: ClassVar[bool] = False
    record_class = None

    def __init__(self) -> None:
        self.opened = 0

    async def connect(self) -> Any:
        await asyncio.sleep(random.uniform(0, 0.002))
        self.opened += 1
        return FakeRaw()

    async def close(self, raw: Any) -> None:
        raw.closed = True

    def terminate(self, raw: Any) -> None:
        raw.closed = True

    def abandon(self, raw: Any) -> None:
        pass

    async def cancel(self, raw: Any) -> bool:
        return not raw.closed

    def is_closed(self, raw: Any) -> bool:
        return bool(raw.closed)

    async def ping(self, raw: Any) -> None:
        pass

    def classify(self, exc: BaseException, raw: Any) -> Failure | None:
        return None

    def transaction_gate(self, options: TransactionOptions) -> None:
        return None


async def test_cancelled_waiters_never_leak_or_overfill_slots() -> None:
    backend = FakeBackend()
    pool = Pool(backend, min_size=0, max_size=5, pre_ping_idle=None)  # type: ignore[arg-type]
    rng = random.Random(3)

    async def user() -> None:
        conn = await pool.acquire()
        try:
            await asyncio.sleep(rng.uniform(0, 0.002))
        finally:
            pool.release(conn, discard=rng.random() < 0.2)

    for _ in range(20):
        tasks = [asyncio.create_task(user()) for _ in range(50)]
        await asyncio.sleep(0)
        for task in rng.sample(tasks, 25):
            asyncio.get_running_loop().call_later(rng.uniform(0, 0.003), task.cancel)
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.01)  # connects finishing after their caller was cancelled
        stats = pool.stats()
        assert stats["in_use"] == 0 and stats["waiting"] == 0
        assert stats["size"] == stats["idle"] <= 5
    live = [c for c in pool._idle if not c.raw.closed]
    assert len(live) == pool.stats()["size"]
    await pool.close()


async def test_acquire_timeout_when_the_pool_is_full() -> None:
    pool = Pool(FakeBackend(), min_size=0, max_size=1, acquire_timeout=0.05)  # type: ignore[arg-type]
    held = await pool.acquire()
    with pytest.raises(PoolTimeout, match="max_size=1"):
        await pool.acquire()
    pool.release(held)
    assert (await pool.acquire()) is held
