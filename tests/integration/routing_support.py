"""What the routing tests share, whatever the cluster (PostgreSQL primary + standby, MariaDB
primary + GTID replica, Galera): URLs listing several hosts, the routing hooks seen, waiting
for the monitor, a task with a context of its own, and the server scripts."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from asyncdb import Database

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
