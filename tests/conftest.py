"""Test configuration: every test that takes `db_url` runs once per backend.

The URLs come from the environment (set by `scripts/test.sh` from `scripts/servers.sh`):
ASYNCDB_TEST_POSTGRES_URL, ASYNCDB_TEST_MYSQL_URL. SQLite always runs, on a fresh file per
test. With ASYNCDB_REQUIRE_ALL_BACKENDS=1 (the test command) or CI=true, a missing server
URL stops the run, and a backend on which no test passed fails it: nothing skips silently.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from asyncdb import Database

pytest_plugins = ["pytester"]

BACKENDS = ("postgresql", "mysql", "sqlite")
_ENV = {"postgresql": "ASYNCDB_TEST_POSTGRES_URL", "mysql": "ASYNCDB_TEST_MYSQL_URL"}
_passed: Counter[str] = Counter()


def _required() -> bool:
    return os.environ.get("ASYNCDB_REQUIRE_ALL_BACKENDS") == "1" or os.environ.get("CI") == "true"


def server_urls() -> dict[str, str]:
    return {name: os.environ[var] for name, var in _ENV.items() if os.environ.get(var)}


def pytest_configure(config: pytest.Config) -> None:
    missing = [_ENV[name] for name in _ENV if name not in server_urls()]
    if missing and _required():
        raise pytest.UsageError(
            f"backends required but not configured: {', '.join(missing)} "
            "(run the suite with scripts/test.sh, which starts the servers)"
        )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        names = [b for b in BACKENDS if b == "sqlite" or b in server_urls()]
        wanted = getattr(metafunc.function, "backends", None)
        if wanted:
            names = [b for b in names if b in wanted]
        metafunc.parametrize(
            "backend", [pytest.param(b, marks=getattr(pytest.mark, b)) for b in names]
        )


def backends(*names: str):  # type: ignore[no-untyped-def]
    """Decorator: run a test only on these backends (still failing if one is missing)."""

    def mark(func):  # type: ignore[no-untyped-def]
        func.backends = names
        return func

    return mark


@pytest.fixture
def db_url(backend: str, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    return server_urls()[backend]


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url, max_size=20)
    await database.connect()
    try:
        yield database
    finally:
        await database.disconnect()


def id_column(backend: str) -> str:
    return {
        "postgresql": "SERIAL PRIMARY KEY",
        "mysql": "INTEGER AUTO_INCREMENT PRIMARY KEY",
        "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    }[backend]


@pytest.fixture
async def items(db: Database, backend: str) -> str:
    """A fresh `items(id, name, value)` table."""
    await db.execute("DROP TABLE IF EXISTS items")
    engine = " ENGINE=InnoDB" if backend == "mysql" else ""
    await db.execute(
        f"CREATE TABLE items (id {id_column(backend)}, name VARCHAR(100) NOT NULL UNIQUE, "
        f"value INTEGER){engine}"
    )
    return "items"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        for name in BACKENDS:
            if (
                f"[{name}" in report.nodeid
                or f"-{name}]" in report.nodeid
                or f"-{name}-" in report.nodeid
            ):
                _passed[name] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _required() or session.config.option.collectonly:
        return
    idle = [name for name in BACKENDS if _passed[name] == 0]
    if idle:
        session.exitstatus = 1
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"FAILED: no test passed on backend(s): {', '.join(idle)}", red=True
            )
