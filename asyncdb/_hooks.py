"""Hooks: callbacks for what happens inside asyncdb, for metrics and tracing.

```python
def on_query_end(event: str, details: dict) -> None:
    metrics.observe(details["duration"], backend=details["backend"], op=details["operation"])

db.add_hook("query_end", on_query_end)
```

Events and their details:

- `query_start`: backend, sql (as sent: placeholders, never parameter values), operation
  (`fetch_all`, `fetch_one`, `fetch_val`, `execute`, `execute_many`, `iterate`, or `command`
  for asyncdb's own BEGIN/COMMIT/SAVEPOINT...), query_id (pairs it with its `query_end`),
  connection_id (a stable id of the pooled connection), transaction_depth (levels open on
  the connection: 0 outside a transaction, 1 in one, 2+ in savepoints).
- `query_end`: the same, plus duration (seconds), error (the asyncdb exception, or None) and
  rowcount (rows returned by a fetch or an iteration, rows affected by an execute when the
  driver says; None when unknown or on error). An `iterate` starts when the first batch is
  asked for and ends when the iteration does (exhausted, failed, or closed after leaving the
  loop early: `aclose()`, or garbage collection, which closes it in a task of its own): its
  duration is the whole iteration, loop body included; its rowcount counts the rows fetched.
- `acquire`: backend, pool, wait (seconds until a connection was ready: waiting in line,
  connecting, pre-ping), connection_id (None if it failed), error (e.g. PoolTimeout) or None.
- `transaction_start`: backend, transaction_id (pairs it with its `transaction_end`), attempt
  (1, or the attempt of a `retry=` decorator). Emitted before BEGIN (or SAVEPOINT) is sent.
- `transaction_end`: the same, plus depth (1 = outermost, 2+ = savepoint; None if BEGIN
  failed), duration, connection_id, outcome (`commit`; `rollback`; `retry`: rolled back and
  the `retry=` decorator runs the function again; `unknown`: the connection was lost while
  COMMIT was in flight) and error (what ended it: the exception that left the block, or the
  one commit/rollback raised; None for a plain rollback or `Rollback`). force_rollback's own
  outer transaction is not reported.
- `connect` (backend, pool, duration: seconds the connect and `on_connect` took,
  connection_id), `invalidate` (backend, pool: a connection was discarded as dead
  or of unknown state), `disconnect_detected` (backend, error), `reset` (backend, pool: a
  connection's session state was reset before reuse). A `listen()` connection emits
  `connect` (pool "<pool> listener", connection_id None) each time it (re)connects and
  `disconnect_detected` when it is lost.

Start and end events are emitted in the task that runs the statement or the transaction,
so a callback sees that task's contextvars (a tracer's current span). A callback that raises
is logged and otherwise ignored; it never breaks a query. With no query hook registered and
DEBUG logging off, a statement costs one check more than no observability at all.
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
    "acquire",
    "transaction_start",
    "transaction_end",
)
# With replicas= (asyncdb._routing): `routing_fallback` (backend, reason: "no_replica",
# "read_your_writes" or "write_on_replica": work sent to the primary instead of a replica),
# `replica_state` (backend, host, state: "usable", "lagging" or "down", lag in seconds or
# None), `role_change` (backend, host, role: "primary", "replica" or None, previous).
EVENTS += ("routing_fallback", "replica_state", "role_change")
Hook = Callable[[str, dict[str, Any]], None]


class Hooks:
    """The callbacks registered on one Database."""

    __slots__ = ("_callbacks", "acquires", "queries", "transactions")

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Hook]] = {event: [] for event in EVENTS}
        # checked on the hot paths: is anyone listening at all?
        self.queries = False
        self.acquires = False
        self.transactions = False

    def add(self, event: str, callback: Hook) -> None:
        self._check(event)
        if not callable(callback):
            raise TypeError(f"hook for {event!r} must be callable, got {callback!r}")
        # A new list, never one changed in place: emit() may be iterating the old one (a hook
        # that removes itself must not make the next one skipped).
        self._callbacks[event] = [*self._callbacks[event], callback]
        self._refresh()

    def remove(self, event: str, callback: Hook) -> None:
        self._check(event)
        callbacks = list(self._callbacks[event])
        if callback in callbacks:
            callbacks.remove(callback)
            self._callbacks[event] = callbacks
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
        callbacks = self._callbacks
        self.queries = bool(callbacks["query_start"] or callbacks["query_end"])
        self.acquires = bool(callbacks["acquire"])
        self.transactions = bool(callbacks["transaction_start"] or callbacks["transaction_end"])
