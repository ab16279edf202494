"""Hooks: callbacks for what happens inside asyncdb, for metrics and tracing.

```python
def on_query_end(event: str, details: dict) -> None:
    metrics.observe(details["duration"], backend=details["backend"])

db.add_hook("query_end", on_query_end)
```

Events and their details: `query_start` (backend, sql), `query_end` (backend, sql, duration
in seconds, error or None), `connect` (backend, pool), `invalidate` (backend, pool: a
connection was discarded as dead or of unknown state), `disconnect_detected` (backend,
error), `reset` (backend, pool: a connection's session state was reset before reuse). A
callback that raises is logged and otherwise ignored; it never breaks a query.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["EVENTS", "Hook", "Hooks"]

logger = logging.getLogger("asyncdb")

EVENTS: tuple[str, ...] = (
    "query_start",
    "query_end",
    "connect",
    "invalidate",
    "disconnect_detected",
    "reset",
)
# With replicas= (asyncdb._routing): `routing_fallback` (backend, reason: "no_replica",
# "read_your_writes" or "write_on_replica": work sent to the primary instead of a replica),
# `replica_state` (backend, host, state: "usable", "lagging" or "down", lag in seconds or
# None), `role_change` (backend, host, role: "primary", "replica" or None, previous).
EVENTS += ("routing_fallback", "replica_state", "role_change")
Hook = Callable[[str, dict[str, Any]], None]


class Hooks:
    """The callbacks registered on one Database."""

    __slots__ = ("_callbacks", "queries")

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Hook]] = {event: [] for event in EVENTS}
        self.queries = False  # checked on the hot path: any query hook at all?

    def add(self, event: str, callback: Hook) -> None:
        self._check(event)
        if not callable(callback):
            raise TypeError(f"hook for {event!r} must be callable, got {callback!r}")
        self._callbacks[event].append(callback)
        self._refresh()

    def remove(self, event: str, callback: Hook) -> None:
        self._check(event)
        if callback in self._callbacks[event]:
            self._callbacks[event].remove(callback)
        self._refresh()

    def emit(self, event: str, **details: Any) -> None:
        for callback in self._callbacks[event]:
            try:
                callback(event, details)
            except Exception:
                logger.exception("asyncdb hook %r for %s raised; ignored", callback, event)

    def _check(self, event: str) -> None:
        if event not in self._callbacks:
            raise ValueError(f"unknown hook event {event!r}; expected one of: {', '.join(EVENTS)}")

    def _refresh(self) -> None:
        self.queries = bool(self._callbacks["query_start"] or self._callbacks["query_end"])
