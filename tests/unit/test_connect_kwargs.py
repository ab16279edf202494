"""How URL and keyword options become driver arguments (pure logic; the effects are tested
against real servers in tests/integration/test_connect_options.py and test_tls.py)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from asyncdb import DatabaseURL, InterfaceError
from asyncdb.backends._common import tls_option

pytest.importorskip("asyncpg")
pytest.importorskip("aiomysql")

from asyncdb.backends.mysql import _connect_kwargs as mysql_kwargs
from asyncdb.backends.postgres import _connect_kwargs as pg_kwargs


def _pg(url: str, **options: Any) -> dict[str, Any]:
    parsed = DatabaseURL(url)
    merged = {**parsed.options, **options}
    kwargs = pg_kwargs(parsed, merged)
    assert merged == {}, f"options left unread: {merged}"
    return kwargs


@pytest.mark.parametrize(
    ("value", "verify", "hostname"),
    [("true", True, True), ("verify-full", True, True), ("verify_ca", True, False)],
)
def test_verifying_values(value: str, verify: bool, hostname: bool) -> None:
    context = tls_option(value, None, "postgresql")
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode == ssl.CERT_REQUIRED) is verify
    assert context.check_hostname is hostname


@pytest.mark.parametrize("value", ["false", "disable", False, "0", "off"])
def test_off_values(value: object) -> None:
    assert tls_option(value, None, "mysql") is None


def test_require_encrypts_without_verifying() -> None:
    context = tls_option("require", None, "mysql")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE


def test_prefer_is_postgres_only() -> None:
    assert tls_option("prefer", None, "postgresql") == "prefer"
    with pytest.raises(InterfaceError, match="unknown ssl value 'prefer' for mysql"):
        tls_option("prefer", None, "mysql")


def test_a_missing_ca_file_is_named() -> None:
    with pytest.raises(InterfaceError, match="nonexistent/ca"):
        tls_option("true", "/nonexistent/ca.pem", "postgresql")


def test_pg_libpq_parameters() -> None:
    kwargs = _pg(
        "postgresql://u:p@h/db?sslmode=disable&application_name=app&target_session_attrs=any"
        "&options=-c%20search_path%3Dx%20-cstatement_timeout%3D5s%20--lock-timeout%3D1s"
        "&connect_timeout=3"
    )
    assert kwargs["ssl"] is False
    assert kwargs["target_session_attrs"] == "any"
    assert kwargs["timeout"] == 3.0
    assert kwargs["server_settings"] == {
        "application_name": "app",
        "search_path": "x",
        "statement_timeout": "5s",
        "lock_timeout": "1s",
    }


def test_pg_multi_host_and_socket() -> None:
    kwargs = _pg("postgresql://u@h1:5432,h2/db")
    assert kwargs["host"] == ["h1", "h2"] and kwargs["port"] == [5432, 5432]
    kwargs = _pg("postgresql://u@/db?host=/var/run/postgresql")
    assert kwargs["host"] == "/var/run/postgresql"


@pytest.mark.parametrize("text", ["search_path=x", "-c", "-c 'unbalanced"])
def test_pg_bad_options_parameter(text: str) -> None:
    with pytest.raises(InterfaceError, match="options parameter"):
        _pg("postgresql://u@h/db", options=text)


def test_mysql_socket_and_init_command() -> None:
    parsed = DatabaseURL("mysql://u@/db?unix_sock=/run/mysqld/mysqld.sock&init_command=SET+x%3D1")
    options = dict(parsed.options)
    kwargs = mysql_kwargs(parsed, options)
    assert options == {}
    assert kwargs["unix_socket"] == "/run/mysqld/mysqld.sock"
    assert kwargs["init_command"] == "SET x=1"
    assert "ssl" not in kwargs
