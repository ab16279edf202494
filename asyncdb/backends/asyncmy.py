"""MySQL and MariaDB through asyncmy: the MySQL backend with asyncmy as its driver adapter.

asyncmy parses the protocol in Cython (several times faster than aiomysql on large results)
behind the same PyMySQL-shaped API and error classes, so only the driver adapter differs:
the connection keeps its socket in an asyncio transport of its own, exposes `connect()` and
`_decoders` instead of `_connect()` and `decoders`, and knows it is closed (`connected`,
`_stream_broken`) even while idle, since its protocol keeps reading.
Classification, cancellation (KILL QUERY), session reset and streaming are MySQLBackend's.

One thing asyncmy lacks is added here: flow control. Its protocol copies whatever the socket
delivers into one growing buffer and never pauses reading, so an unbuffered cursor whose
consumer is slower than the server would end up holding the whole result in memory.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from sqlalchemy.dialects.mysql import asyncmy as sa_asyncmy

from ._common import import_driver
from .mysql import MySQLBackend

__all__ = ["AsyncmyBackend"]

_FIELD_TYPE_JSON = 245  # MySQL's JSON column type; MariaDB reports LONGTEXT instead
# Unread bytes after which the socket stops being read until the rows are consumed. Small:
# asyncmy turns every row already buffered into Python objects at once, about ten times their
# size on the wire. Reading resumes as soon as the reader needs more bytes.
_HIGH_WATER = 1 << 16
_MAX_DRIVER_TIMEOUT = 31_536_000.0  # asyncmy's upper bound for connect_timeout (a year)


class AsyncmyBackend(MySQLBackend):
    """asyncmy connections in autocommit mode; everything but the adapter is MySQLBackend."""

    driver: ClassVar[str] = "asyncmy"

    def _driver_load(self) -> None:
        asyncmy = import_driver("asyncmy", "asyncmy")
        cursors = import_driver("asyncmy.cursors", "asyncmy")
        self._err = import_driver("asyncmy.errors", "asyncmy")
        self._client = import_driver("asyncmy.constants.CLIENT", "asyncmy")
        self.dialect = sa_asyncmy.dialect()
        self._connection_class = _quiet_connection(asyncmy)
        self._protocol_class = _flow_controlled(import_driver("asyncmy.connection", "asyncmy"))
        # asyncmy's own classes: a subclass would lose their C fast paths (they test
        # `type(cursor) is Cursor`). Warnings are silenced on the connection instead.
        self._cursor = cursors.Cursor
        self._stream_cursor = cursors.SSCursor

    def _driver_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if "db" in kwargs:
            kwargs["database"] = kwargs.pop("db")  # asyncmy's `db` is a deprecated alias
        return kwargs

    async def _open(self) -> Any:
        # asyncmy refuses a connect timeout over a year; the whole connect is bounded by
        # connect_within with the real value anyway.
        timeout = min(self._connect_kwargs["connect_timeout"], _MAX_DRIVER_TIMEOUT)
        raw = self._connection_class(**{**self._connect_kwargs, "connect_timeout": timeout})
        if not self._multi_statements:
            raw._client_flag &= ~self._client.MULTI_STATEMENTS
        # asyncmy closes its transport on every failure, cancellation included, and names
        # the OSError in its "Can't connect" message itself.
        await raw.connect()
        # The same object, made to pause reading at the high-water mark (no new state, so
        # switching the class of the live protocol is safe; after TLS it is the final one).
        raw._proto.__class__ = self._protocol_class
        return raw

    def _driver_decode_json(self, raw: Any) -> None:
        raw._decoders[_FIELD_TYPE_JSON] = json.loads  # a per-connection copy already

    def _driver_transport(self, raw: Any) -> Any:
        return raw._transport

    def _driver_forget_socket(self, raw: Any) -> None:
        raw._transport = None
        raw._connected = False

    def is_closed(self, raw: Any) -> bool:
        # asyncmy's protocol keeps reading while the connection is idle (aiomysql does not),
        # so a session the server ended (KILL, wait_timeout, restart) is known at checkout,
        # as on asyncpg: the pool replaces it without a ping, and a COMMIT is never sent on it.
        return not raw.connected or bool(raw._stream_broken)


def _quiet_connection(asyncmy: Any) -> type:
    """A connection whose cursors skip the SHOW WARNINGS round trip after a statement with
    notes (e.g. DROP TABLE IF EXISTS): asyncmy runs it and logs each note as a warning."""

    async def show_warnings(self: Any) -> None:
        return None

    cls: type = type("Connection", (asyncmy.Connection,), {"show_warnings": show_warnings})
    return cls


def _flow_controlled(connection: Any) -> type:
    """asyncmy's protocol, pausing the transport while `_HIGH_WATER` bytes wait unread and
    resuming it whenever the reader has to wait for more (so it can never wait forever).

    While paused the protocol's class is the paused variant, whose `wait_for_data` resumes
    reading and switches back; the rest of the time the driver's own `wait_for_data` runs,
    in C, with no Python frame resumed at every wait on the wire."""
    base: Any = connection._MySQLProtocol

    def buffer_updated(self: Any, nbytes: int) -> None:
        base.buffer_updated(self, nbytes)
        transport = self.transport
        if transport is not None and self.length - self.pos > _HIGH_WATER:
            transport.pause_reading()
            self.__class__ = paused

    async def wait_for_data(self: Any, need: int) -> None:
        self.__class__ = running
        transport = self.transport
        if transport is not None:
            transport.resume_reading()
        await base.wait_for_data(self, need)

    running: type = type("FlowControlledProtocol", (base,), {"buffer_updated": buffer_updated})
    paused: type = type("PausedProtocol", (running,), {"wait_for_data": wait_for_data})
    return running
