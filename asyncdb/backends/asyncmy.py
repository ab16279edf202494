"""MySQL and MariaDB through asyncmy: the MySQL backend with asyncmy as its driver adapter.

asyncmy parses the protocol in Cython (several times faster than aiomysql on large results)
behind the same PyMySQL-shaped API and error classes, so only the driver adapter differs:
the connection keeps its socket in an asyncio transport of its own, exposes `connect()` and
`_decoders` instead of `_connect()` and `decoders`, and reports "closed" with `connected`.
Classification, cancellation (KILL QUERY), session reset and streaming are MySQLBackend's.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from sqlalchemy.dialects.mysql import asyncmy as sa_asyncmy

from ._common import import_driver
from .mysql import MySQLBackend

__all__ = ["AsyncmyBackend"]

_FIELD_TYPE_JSON = 245  # MySQL's JSON column type; MariaDB reports LONGTEXT instead


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
        # asyncmy's own classes: a subclass would lose their C fast paths (they test
        # `type(cursor) is Cursor`). Warnings are silenced on the connection instead.
        self._cursor = cursors.Cursor
        self._stream_cursor = cursors.SSCursor

    def _driver_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if "db" in kwargs:
            kwargs["database"] = kwargs.pop("db")  # asyncmy's `db` is a deprecated alias
        return kwargs

    async def _driver_handshake(self) -> Any:
        raw = self._connection_class(**self._connect_kwargs)
        if not self._multi_statements:
            raw._client_flag &= ~self._client.MULTI_STATEMENTS
        # asyncmy closes its transport on every failure, cancellation included, and names
        # the OSError in its "Can't connect" message itself.
        await raw.connect()
        return raw

    def _driver_decode_json(self, raw: Any) -> None:
        raw._decoders[_FIELD_TYPE_JSON] = json.loads  # a per-connection copy already

    def _driver_transport(self, raw: Any) -> Any:
        return raw._transport

    def _driver_forget_socket(self, raw: Any) -> None:
        raw._transport = None
        raw._connected = False

    def is_closed(self, raw: Any) -> bool:
        return not raw.connected


def _quiet_connection(asyncmy: Any) -> type:
    """A connection whose cursors skip the SHOW WARNINGS round trip after a statement with
    notes (e.g. DROP TABLE IF EXISTS): asyncmy runs it and logs each note as a warning."""

    async def show_warnings(self: Any) -> None:
        return None

    cls: type = type("Connection", (asyncmy.Connection,), {"show_warnings": show_warnings})
    return cls
