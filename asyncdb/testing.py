"""pytest plugin: databases whose writes are rolled back at the end of each test.

Enabled by the `pytest11` entry point once asyncdb is installed; it does nothing until a test
asks for its fixtures. Configure the URL with `--asyncdb-url`, the `asyncdb_url` ini option
or the `ASYNCDB_URL` environment variable (or override the `asyncdb_url` fixture).

```python
async def test_signup(asyncdb_database):
    await asyncdb_database.execute("INSERT INTO users (name) VALUES ('ann')")
    assert await asyncdb_database.fetch_val("SELECT count(*) FROM users") == 1
    # rolled back when the test ends: the next test starts from the same data
```

`asyncdb_database` is `Database(url, force_rollback=True)`: every task of the test shares one
connection inside a transaction that is rolled back at the end, and the test's own
transactions become savepoints. Hand it to the code under test (dependency injection, or
FastAPI's `app.dependency_overrides`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator

import pytest

from ._database import Database

__all__ = ["asyncdb_database", "asyncdb_url"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asyncdb")
    group.addoption("--asyncdb-url", default=None, help="database URL for asyncdb's fixtures")
    parser.addini("asyncdb_url", "database URL for asyncdb's fixtures", default="")


@pytest.fixture
def asyncdb_url(request: pytest.FixtureRequest) -> str:
    """The URL the `asyncdb_database` fixture connects to."""
    url = (
        request.config.getoption("--asyncdb-url")
        or request.config.getini("asyncdb_url")
        or os.environ.get("ASYNCDB_URL")
    )
    if not url:
        raise pytest.UsageError(
            "asyncdb's fixtures need a database URL: pass --asyncdb-url, set the asyncdb_url "
            "ini option or ASYNCDB_URL, or override the asyncdb_url fixture"
        )
    return str(url)


# Async fixtures need pytest-asyncio; without it the plugin defines none (and stays harmless,
# since it is loaded by an entry point wherever asyncdb is installed).
if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def asyncdb_database(asyncdb_url: str) -> AsyncIterator[Database]:
        """A connected Database whose writes are all rolled back when the test ends."""
        database = Database(asyncdb_url, force_rollback=True)
        await database.connect()
        try:
            yield database
        finally:
            await database.disconnect()
