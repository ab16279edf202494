"""A FastAPI app on asyncdb: each request's writes commit or roll back on their own.

Serve it (any backend URL; SQLite needs no server):

    pip install -e '.[sqlite]' fastapi uvicorn
    ASYNCDB_URL=sqlite:///notes.db uvicorn examples.fastapi_app:app

    curl -X POST 'localhost:8000/notes?text=hello'
    curl 'localhost:8000/notes'
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, HTTPException

from asyncdb import Connection, Database
from asyncdb.contrib.starlette import connection_dependency, lifespan


def create_app(url: str) -> tuple[FastAPI, Database]:
    db = Database(url)

    async def create_schema() -> None:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text VARCHAR(200) NOT NULL, "
            "request INTEGER NOT NULL)"
        )

    @contextlib.asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(db)(app):  # connect at startup, disconnect at shutdown
            await create_schema()
            yield

    app = FastAPI(lifespan=app_lifespan)
    get_conn = connection_dependency(db)

    @app.post("/notes")
    @db.transaction()
    async def create_note(text: str, request: int = 0, fail: bool = False) -> dict[str, Any]:
        # two writes in one transaction: both stay, or neither
        insert = "INSERT INTO notes (text, request) VALUES (:t, :r)"
        await db.execute(insert, {"t": text, "r": request})
        await db.execute(insert, {"t": text + " (copy)", "r": request})
        if fail:
            raise HTTPException(status_code=409, detail="rejected; nothing was written")
        return {"request": request}

    @app.get("/notes")
    async def list_notes(conn: Connection = Depends(get_conn)) -> list[dict[str, Any]]:  # noqa: B008
        rows = await conn.fetch_all("SELECT id, text, request FROM notes ORDER BY id")
        return [dict(row) for row in rows]

    return app, db


app, database = create_app(os.environ.get("ASYNCDB_URL", "sqlite:///notes.db"))
