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
