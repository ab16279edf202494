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

import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException

from asyncdb import Connection, Database
from asyncdb.contrib.starlette import connection_dependency, lifespan

notes = sa.Table(
    "notes",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),  # SERIAL / AUTO_INCREMENT / ROWID
    sa.Column("text", sa.String(200), nullable=False),
    sa.Column("request", sa.Integer, nullable=False),
)


def create_app(url: str) -> tuple[FastAPI, Database]:
    db = Database(url)

    async def create_schema() -> None:
        await db.execute(sa.schema.CreateTable(notes, if_not_exists=True))

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
        await db.execute(notes.insert(), {"text": text, "request": request})
        await db.execute(notes.insert(), {"text": text + " (copy)", "request": request})
        if fail:
            raise HTTPException(status_code=409, detail="rejected; nothing was written")
        return {"request": request}

    @app.get("/notes")
    async def list_notes(conn: Connection = Depends(get_conn)) -> list[dict[str, Any]]:  # noqa: B008
        rows = await conn.fetch_all("SELECT id, text, request FROM notes ORDER BY id")
        return [dict(row) for row in rows]

    return app, db


app, database = create_app(os.environ.get("ASYNCDB_URL", "sqlite:///notes.db"))
