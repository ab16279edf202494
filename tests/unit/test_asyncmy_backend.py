"""Which URL schemes pick asyncmy, and what the asyncmy backend hands its driver (pure logic;
everything it does against a server runs in the integration tests as `mysql+asyncmy`)."""

from __future__ import annotations

import sys

import pytest

from asyncdb import Database, DatabaseURL, InterfaceError
from asyncdb.backends import create_backend

pytest.importorskip("asyncmy")
pytest.importorskip("aiomysql")


@pytest.mark.parametrize("scheme", ["mysql+asyncmy", "mariadb+asyncmy"])
def test_asyncmy_schemes(scheme: str) -> None:
    backend = create_backend(DatabaseURL(f"{scheme}://u:pw@127.0.0.1/db"), {})
    assert type(backend).__name__ == "AsyncmyBackend"
    assert (backend.name, backend.driver) == ("mysql", "asyncmy")  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheme", ["mysql", "mysql+aiomysql", "mariadb", "mariadb+aiomysql"])
def test_mysql_stays_aiomysql(scheme: str) -> None:
    backend = create_backend(DatabaseURL(f"{scheme}://u:pw@127.0.0.1/db"), {})
    assert type(backend).__name__ == "MySQLBackend"
    assert backend.driver == "aiomysql"  # type: ignore[attr-defined]


def test_asyncmy_connect_arguments() -> None:
    """asyncmy's own argument names (`database`, not its deprecated alias `db`)."""
    backend = create_backend(
        DatabaseURL("mysql+asyncmy://u:pw@127.0.0.1:3307/shop"), {"charset": "latin1"}
    )
    kwargs = backend._connect_kwargs  # type: ignore[attr-defined]
    assert kwargs["database"] == "shop" and "db" not in kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["charset"]) == ("127.0.0.1", 3307, "latin1")
    assert kwargs["autocommit"] is True


def test_the_password_stays_out_of_sight() -> None:
    db = Database("mysql+asyncmy://u:s3cr3t@127.0.0.1/db")
    assert "s3cr3t" not in repr(db) and "s3cr3t" not in str(db.url)


def test_unknown_option_is_named() -> None:
    with pytest.raises(InterfaceError, match="bogus"):
        Database("mysql+asyncmy://u@127.0.0.1/db?bogus=1")


def test_unsupported_scheme_lists_asyncmy() -> None:
    with pytest.raises(InterfaceError, match=r"mysql\+asyncmy"):
        Database("mysql+mysqldb://u@127.0.0.1/db")


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncmy", None)  # what `import asyncmy` sees uninstalled
    with pytest.raises(ImportError, match=r"asyncdb-layer\[asyncmy\]"):
        create_backend(DatabaseURL("mysql+asyncmy://u@127.0.0.1/db"), {})
