"""What the routing tests share, whatever the cluster (PostgreSQL primary + standby, MariaDB
primary + GTID replica, Galera): URLs listing several hosts, the routing hooks seen, waiting
for the monitor, a task with a context of its own, the server scripts, and the concurrent
writers of the failover tests."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from asyncdb import CommitOutcomeUnknownError, Database

T = TypeVar("T")
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def port_of(url: str) -> int:
    return int(url.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def one_url(*urls: str) -> str:
    """One URL listing the hosts of `urls`, in that order (login and database of the first)."""
    first = urls[0]
    hosts = ",".join(f"127.0.0.1:{port_of(u)}" for u in urls)
    return first.replace(f"127.0.0.1:{port_of(first)}", hosts, 1)


def run_script(script: str, *args: str) -> None:
    """A sub-command of scripts/`script` on the running servers. No pipes: a server it
    starts keeps its standard streams open, and reading them would hang."""
    subprocess.run(
        ["bash", str(SCRIPTS / script), *args],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class Events:
    """The routing hooks a Database fired: fallbacks, replica states, role changes."""

    def __init__(self, db: Database) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        for event in ("routing_fallback", "replica_state", "role_change"):
            db.add_hook(event, lambda e, d: self.seen.append((e, d)))

    def reasons(self) -> list[str]:
        return [d["reason"] for e, d in self.seen if e == "routing_fallback"]

    def states(self) -> list[str]:
        return [d["state"] for e, d in self.seen if e == "replica_state"]


async def until(check: Callable[[], bool], limit: float) -> None:
    """Wait until `check()` holds; fail after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def fresh(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task with a context of its own (another request): no read-your-writes position,
    no pin to the primary."""
    return asyncio.create_task(coro, context=contextvars.Context())


class Writers:
    """Concurrent writers across a failover: one task per list in `keys`, each writing its
    keys one by one with `insert(key)` (a `@db.transaction(retry=..., reconnect="backoff")`
    function) and pausing `gap` seconds after each commit. What became of each key is
    recorded, so that a test can check that nothing was lost or written twice."""

    def __init__(
        self,
        insert: Callable[[Any], Awaitable[None]],
        keys: Sequence[Sequence[Hashable]],
        gap: float,
    ) -> None:
        self._insert = insert
        self.keys = keys
        self._gap = gap
        self.commits: list[float] = []  # when each commit returned
        self.unknown: list[Hashable] = []  # CommitOutcomeUnknownError: may have committed
        self.failed: list[tuple[Hashable, BaseException]] = []
        self._tasks = [asyncio.create_task(self._write(mine)) for mine in keys]

    async def _write(self, keys: Sequence[Hashable]) -> None:
        for key in keys:
            try:
                await self._insert(key)
            except CommitOutcomeUnknownError:
                self.unknown.append(key)
                continue
            except Exception as exc:
                self.failed.append((key, exc))
                continue
            self.commits.append(time.monotonic())
            await asyncio.sleep(self._gap)

    async def finish(self) -> None:
        await asyncio.gather(*self._tasks)

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()

    def longest_pause(self, since: float) -> float:
        """The longest time between two commits from a second before `since` on."""
        times = sorted(t for t in self.commits if t > since - 1)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def check(self, found: Iterable[Hashable]) -> None:
        """Every key is in `found` exactly once (at most once if its outcome was unknown),
        no write failed, and nothing else was written."""
        assert not self.failed, self.failed[:3]
        counts = Counter(found)
        expected = {key for mine in self.keys for key in mine}
        for key in expected:
            allowed = {0, 1} if key in self.unknown else {1}
            assert counts[key] in allowed, (key, counts[key])  # once: not lost, not twice
        assert set(counts) <= expected
