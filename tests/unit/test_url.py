"""DatabaseURL: parsing, rebuilding, and never showing the password."""

from __future__ import annotations

import pytest

from asyncdb import DatabaseURL


def test_components() -> None:
    url = DatabaseURL("postgresql+asyncpg://user:p%40ss@db.example:5433/app?min_size=2&ssl=true")
    assert url.scheme == "postgresql+asyncpg"
    assert url.dialect == "postgresql"
    assert url.driver == "asyncpg"
    assert url.username == "user"
    assert url.password == "p@ss"
    assert url.hostname == "db.example"
    assert url.port == 5433
    assert url.database == "app"
    assert url.options == {"min_size": "2", "ssl": "true"}


def test_password_never_in_str_or_repr() -> None:
    url = DatabaseURL("mysql://root:hunter2@localhost/app")
    assert "hunter2" not in str(url)
    assert "hunter2" not in repr(url)
    assert "hunter2" not in url.obscure_password
    assert str(url) == "mysql://root:***@localhost/app"
    assert url.render(hide_password=False) == "mysql://root:hunter2@localhost/app"


@pytest.mark.parametrize(
    ("text", "database"),
    [
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:////tmp/absolute.db", "/tmp/absolute.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("sqlite+aiosqlite:///x.db", "x.db"),
    ],
)
def test_sqlite_paths(text: str, database: str) -> None:
    url = DatabaseURL(text)
    assert url.dialect == "sqlite"
    assert url.database == database
    assert DatabaseURL(str(url)).database == database


def test_replace_rebuilds() -> None:
    url = DatabaseURL("postgresql://u:secret@h:1/a")
    assert url.replace(database="b").render(hide_password=False) == "postgresql://u:secret@h:1/b"
    assert url.replace(driver="asyncpg").scheme == "postgresql+asyncpg"
    assert url.replace(password="n/w@").password == "n/w@"
    with pytest.raises(TypeError, match="unknown components"):
        url.replace(colour="red")


def test_equality_and_bad_input() -> None:
    assert DatabaseURL("sqlite:///a.db") == "sqlite:///a.db"
    assert DatabaseURL(DatabaseURL("sqlite:///a.db")) == DatabaseURL("sqlite:///a.db")
    with pytest.raises(ValueError, match="no scheme"):
        DatabaseURL("localhost/db")
    with pytest.raises(TypeError):
        DatabaseURL(42)  # type: ignore[arg-type]


def test_multi_host_urls() -> None:
    url = DatabaseURL("postgresql://u:s3cret@h1:5432,H2:5433,[::1]:5434,h4/db?x=1")
    assert url.hosts == [("h1", 5432), ("h2", 5433), ("::1", 5434), ("h4", None)]
    assert url.hostname == "h1"
    assert url.port == 5432
    assert "s3cret" not in str(url) and "s3cret" not in repr(url)
    assert str(url) == "postgresql://u:***@h1:5432,H2:5433,[::1]:5434,h4/db?x=1"
    assert url.replace(database="other").render(hide_password=False) == (
        "postgresql://u:s3cret@h1:5432,H2:5433,[::1]:5434,h4/other?x=1"
    )
    assert url.replace(hostname="solo", port=1).hosts == [("solo", 1)]


def test_single_host_and_no_host() -> None:
    assert DatabaseURL("postgresql://h:5/db").hosts == [("h", 5)]
    assert DatabaseURL("sqlite:///x.db").hosts == []
    assert DatabaseURL("sqlite:///x.db").hostname is None
    assert DatabaseURL("sqlite:///x.db").port is None


@pytest.mark.parametrize(
    ("text", "hostname", "port"),
    [
        ("postgresql://u@/db?host=/var/run/postgresql", "/var/run/postgresql", None),
        ("postgresql://u@:5433/db?host=/var/run/postgresql", "/var/run/postgresql", 5433),
        ("mysql://u@/db?unix_sock=/run/mysqld/mysqld.sock", "/run/mysqld/mysqld.sock", None),
        ("postgresql://u@%2Fvar%2Frun%2Fpostgresql/db", "/var/run/postgresql", None),
        ("postgresql://u@db.example/db?host=/ignored", "db.example", None),
    ],
)
def test_socket_host_fallback(text: str, hostname: str, port: int | None) -> None:
    url = DatabaseURL(text)
    assert url.hostname == hostname
    assert url.port == port


def test_bad_port_is_named() -> None:
    with pytest.raises(ValueError, match="bad port 'x'"):
        _ = DatabaseURL("postgresql://h1:5432,h2:x/db").hosts
