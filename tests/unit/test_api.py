"""The public surface: exported names, errors for bad input, missing drivers."""

from __future__ import annotations

import subprocess
import sys

import pytest

import asyncdb
from asyncdb import Database, InterfaceError


def test_all_is_sorted_complete_and_reports_asyncdb() -> None:
    assert asyncdb.__all__ == sorted(asyncdb.__all__)
    public = {n for n in dir(asyncdb) if not n.startswith("_") and n[0].isupper()}
    assert public == set(asyncdb.__all__)
    for name in asyncdb.__all__:
        assert getattr(asyncdb, name).__module__ == "asyncdb"


def test_exception_tree() -> None:
    assert issubclass(asyncdb.CommitOutcomeUnknownError, asyncdb.DisconnectionError)
    assert issubclass(asyncdb.DisconnectionError, asyncdb.OperationalError)
    assert issubclass(asyncdb.ConflictError, asyncdb.OperationalError)
    assert issubclass(asyncdb.PoolTimeout, asyncdb.OperationalError)
    for name in (
        "InterfaceError",
        "IntegrityError",
        "ProgrammingError",
        "DataError",
        "TransactionAbortedError",
        "OperationalError",
    ):
        assert issubclass(getattr(asyncdb, name), asyncdb.DatabaseError)
    assert not issubclass(asyncdb.Rollback, asyncdb.DatabaseError)


def test_import_without_drivers_and_missing_driver_names_the_extra() -> None:
    code = (
        "import sys\n"
        "for m in ('asyncpg', 'aiomysql', 'aiosqlite'): sys.modules[m] = None\n"
        "import asyncdb\n"
        "try:\n"
        "    asyncdb.Database('postgresql://u:pw@localhost/db')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'asyncdb-layer[postgresql]'" in out.stdout
    assert "pw" not in out.stdout.replace("pip", "")


def test_bad_options_are_named() -> None:
    with pytest.raises(InterfaceError, match="unknown database options: colour"):
        Database("sqlite:///x.db", colour="red")
    with pytest.raises(InterfaceError, match="max_size must be a number"):
        Database("sqlite:///x.db?max_size=lots")
    with pytest.raises(InterfaceError, match="unsupported database url scheme"):
        Database("mongodb://localhost/x")
    # pool and transaction options are checked when given, not at first use
    with pytest.raises(InterfaceError, match="max_size must be at least 1"):
        Database("sqlite:///x.db", max_size=0)
    with pytest.raises(InterfaceError, match="min_size must be between 0 and max_size"):
        Database("sqlite:///x.db?min_size=5&max_size=2")
    with pytest.raises(InterfaceError, match="reconnect must be one of fail_fast, backoff"):
        Database("sqlite:///x.db", reconnect="sometimes")
    db = Database("postgresql://u@localhost/db")
    with pytest.raises(InterfaceError, match="unknown isolation level 'snapshot' for postgresql"):
        db.transaction(isolation="snapshot")
    with pytest.raises(InterfaceError, match="reconnect must be one of"):
        db.transaction(reconnect="later")


def test_repr_hides_password() -> None:
    db = Database("postgresql://u:topsecret@localhost/db")
    assert "topsecret" not in repr(db)
    assert "topsecret" not in repr(db.url)


async def test_use_before_connect_is_a_clear_error() -> None:
    db = Database("sqlite:///:memory:")
    with pytest.raises(InterfaceError, match="not connected"):
        await db.fetch_all("SELECT 1")
