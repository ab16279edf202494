"""The FastAPI example app driven through httpx's ASGI transport: 200 concurrent requests,
each request's writes commit or roll back on their own, on every backend."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from examples.fastapi_app import create_app

pytestmark = pytest.mark.timeout(120)


async def test_200_concurrent_requests_commit_or_roll_back_alone(db_url: str, db: object) -> None:
    await db.execute("DROP TABLE IF EXISTS notes")  # type: ignore[attr-defined]
    app, database = create_app(db_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def post(i: int) -> int:
                params = {"text": f"note {i}", "request": i, "fail": i % 4 == 0}
                return (await client.post("/notes", params=params)).status_code

            statuses = await asyncio.gather(*(post(i) for i in range(200)))
            assert statuses.count(200) == 150 and statuses.count(409) == 50
            notes = (await client.get("/notes")).json()
        stats = database.pool_stats()
        assert stats["in_use"] == 0
    by_request: dict[int, int] = {}
    for note in notes:
        by_request[note["request"]] = by_request.get(note["request"], 0) + 1
    assert set(by_request) == {i for i in range(200) if i % 4}
    assert set(by_request.values()) == {2}
    assert not database.is_connected
