"""The pytest plugin: a test's writes through `asyncdb_database` are gone after the test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import asyncdb
from asyncdb import Database

# The inner pytest must load the asyncdb under test (this checkout), not an installed copy.
_CHECKOUT = str(Path(asyncdb.__file__).resolve().parent.parent)

INNER = """
import asyncio

async def test_writes(asyncdb_database):
    await asyncdb_database.execute("INSERT INTO items (name) VALUES ('from-inner-test')")

    @asyncdb_database.transaction()
    async def more(i):
        await asyncdb_database.execute("INSERT INTO items (name) VALUES (:n)", {"n": f"t{i}"})

    await asyncio.gather(*(more(i) for i in range(5)))
    assert await asyncdb_database.fetch_val("SELECT count(*) FROM items") == 7

async def test_starts_clean(asyncdb_database):
    assert await asyncdb_database.fetch_val("SELECT count(*) FROM items") == 1
"""


async def test_plugin_rolls_back_each_test(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    db: Database,
    items: str,
) -> None:
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (_CHECKOUT, path) if p))
    await db.execute("INSERT INTO items (name) VALUES ('committed-before')")
    pytester.makepyfile(test_inner=INNER)
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    result = pytester.runpytest_subprocess("--asyncdb-url", db_url, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    names = [r["name"] for r in await db.fetch_all("SELECT name FROM items")]
    assert names == ["committed-before"]


def test_plugin_without_url_says_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner="async def test_x(asyncdb_database):\n    pass\n")
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*asyncdb's fixtures need a database URL*"])
