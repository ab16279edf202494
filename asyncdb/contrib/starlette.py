"""Starlette and FastAPI integration: a lifespan that connects, a dependency that yields the
request's connection.

```python
from fastapi import Depends, FastAPI
from asyncdb import Connection, Database
from asyncdb.contrib.starlette import connection_dependency, lifespan

db = Database("postgresql://app@localhost/app")
app = FastAPI(lifespan=lifespan(db))
get_conn = connection_dependency(db)

@app.post("/notes")
@db.transaction()                       # one transaction per request, on its own connection
async def create(text: str, conn: Connection = Depends(get_conn)) -> dict:
    await conn.execute("INSERT INTO notes (text) VALUES (:t)", {"t": text})
    return {"ok": True}
```
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from .._connection import Connection
from .._database import Database

__all__ = ["connection_dependency", "lifespan"]


def lifespan(
    *databases: Database,
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan for `Starlette(lifespan=...)` / `FastAPI(lifespan=...)`: connect the databases
    at startup and disconnect them at shutdown (also if startup fails half-way)."""

    @contextlib.asynccontextmanager
    async def _lifespan(app: Any) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for database in databases:
                await database.connect()
                stack.push_async_callback(database.disconnect)
            yield

    return _lifespan


def connection_dependency(database: Database) -> Callable[[], AsyncIterator[Connection]]:
    """A FastAPI dependency yielding the request task's connection, checked out for the
    whole request (and returned to the pool right after it)."""

    async def _connection() -> AsyncIterator[Connection]:
        async with database.connection() as connection:
            yield connection

    return _connection
