"""Test configuration: every test that takes `db_url` runs once per backend.

The URLs come from the environment (set by `scripts/test.sh` from `scripts/servers.sh`):
ASYNCDB_TEST_POSTGRES_URL, ASYNCDB_TEST_MYSQL_URL. SQLite always runs, on a fresh file per
test. With ASYNCDB_REQUIRE_ALL_BACKENDS=1 (the test command) or CI=true, a missing server
URL stops the run, and a backend on which no test passed fails it: nothing skips silently.

A backend id is a server family and a driver: `mysql` (aiomysql) and `mysql+asyncmy` both
run on the MySQL server. The `backend` fixture is the family (what SQL text and expected
values depend on, so `backend == "mysql"` holds for both MySQL drivers); the `driver`
fixture is the client library of this run ("" for the family's default one), and `db_url`
carries it in its scheme. `@backends("mysql")` selects the family, every driver included;
`@backends("mysql+asyncmy")` one driver only.
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from asyncdb import Database

pytest_plugins = ["pytester"]

BACKENDS = ("postgresql", "mysql", "sqlite")
# Every backend id: (id, family, driver); driver "" is the family's default driver.
BACKEND_IDS = (
    ("postgresql", "postgresql", ""),
    ("mysql", "mysql", ""),
    ("mysql+asyncmy", "mysql", "asyncmy"),
    ("sqlite", "sqlite", ""),
)
_ENV = {"postgresql": "ASYNCDB_TEST_POSTGRES_URL", "mysql": "ASYNCDB_TEST_MYSQL_URL"}
_DRIVER_MODULES = {"asyncmy": "asyncmy"}
_passed: Counter[str] = Counter()


def _required() -> bool:
    return os.environ.get("ASYNCDB_REQUIRE_ALL_BACKENDS") == "1" or os.environ.get("CI") == "true"


def server_urls() -> dict[str, str]:
    return {name: os.environ[var] for name, var in _ENV.items() if os.environ.get(var)}


def _installed(driver: str) -> bool:
    return not driver or importlib.util.find_spec(_DRIVER_MODULES[driver]) is not None


def pytest_configure(config: pytest.Config) -> None:
    missing = [_ENV[name] for name in _ENV if name not in server_urls()]
    missing += [_DRIVER_MODULES[d] for _, _, d in BACKEND_IDS if not _installed(d)]
    if missing and _required():
        raise pytest.UsageError(
            f"backends required but not configured: {', '.join(missing)} "
            "(run the suite with scripts/test.sh, which starts the servers)"
        )


def active_backend_ids() -> list[str]:
    """The backend ids this run can use: server configured (or SQLite), driver installed."""
    return [
        ident
        for ident, family, driver in BACKEND_IDS
        if (family == "sqlite" or family in server_urls()) and _installed(driver)
    ]


def driver_params(family: str) -> list[Any]:
    """pytest params (driver, id=backend id) for a fixture of one family's own tests."""
    return [
        pytest.param(driver, id=ident, marks=[getattr(pytest.mark, d) for d in (driver,) if d])
        for ident, fam, driver in BACKEND_IDS
        if fam == family and ident in active_backend_ids()
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    with_driver = "driver" in metafunc.fixturenames
    wanted = getattr(metafunc.function, "backends", None)
    params = []
    for ident, family, driver in BACKEND_IDS:
        if ident not in active_backend_ids():
            continue
        if wanted and ident not in wanted and family not in wanted:
            continue
        if driver and not with_driver:
            continue  # the test never connects through db_url: one run per family
        marks = [getattr(pytest.mark, family)] + ([getattr(pytest.mark, driver)] if driver else [])
        values = (family, driver) if with_driver else (family,)
        params.append(pytest.param(*values, id=ident, marks=marks))
    metafunc.parametrize("backend,driver" if with_driver else "backend", params)


def backends(*names: str):  # type: ignore[no-untyped-def]
    """Decorator: run a test only on these backends (still failing if one is missing)."""

    def mark(func):  # type: ignore[no-untyped-def]
        func.backends = names
        return func

    return mark


@pytest.fixture
def driver() -> str:
    """The driver of this run ("" for the family's default); parametrized with `backend`."""
    return ""


def with_driver(url: str, driver: str) -> str:
    """A server URL with its scheme switched to `driver` (`mysql://` -> `mysql+asyncmy://`)."""
    if not driver:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+')[0]}+{driver}://{rest}"


@pytest.fixture
def db_url(backend: str, driver: str, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    return with_driver(server_urls()[backend], driver)


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
        params = report.nodeid.partition("[")[2].removesuffix("]").split("-")
        for ident, _, _ in BACKEND_IDS:
            if ident in params:
                _passed[ident] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _required() or session.config.option.collectonly:
        return
    idle = [ident for ident, _, _ in BACKEND_IDS if _passed[ident] == 0]
    if idle:
        session.exitstatus = 1
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"FAILED: no test passed on backend(s): {', '.join(idle)}", red=True
            )
