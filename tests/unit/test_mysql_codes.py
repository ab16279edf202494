"""MySQL's classification table for the codes after which the server closed the session.

Pure logic: the exceptions are built as PyMySQL builds them from an error packet; the codes
that can be caused for real are in tests/integration/test_mysql_hardening.py."""

from __future__ import annotations

import pytest

pymysql_err = pytest.importorskip("pymysql.err")

from asyncdb import DatabaseURL  # noqa: E402
from asyncdb.backends import create_backend  # noqa: E402
from asyncdb.backends.base import ErrorKind, ErrorScope  # noqa: E402

DISCONNECTS = [1040, 1053, 1152, 1153, 1156, 1158, 1159, 1160, 1161, 1184, 1927]
DISCONNECTS += [2006, 2013, 2014, 2055, 3032, 3169, 4031]


@pytest.fixture(scope="module")
def mysql_backend():  # type: ignore[no-untyped-def]
    return create_backend(DatabaseURL("mysql://u@127.0.0.1/db"), {})


@pytest.mark.parametrize("code", DISCONNECTS)
def test_session_closing_codes_are_disconnects(mysql_backend, code: int) -> None:  # type: ignore[no-untyped-def]
    exc = pymysql_err.OperationalError(code, "the server closed the session")
    failure = mysql_backend.classify(exc, None)
    assert failure.kind is ErrorKind.DISCONNECT
    assert failure.scope is ErrorScope.TRANSACTION
    assert failure.code == code


@pytest.mark.parametrize(
    ("cls", "code", "kind"),
    [
        ("ProgrammingError", 1064, ErrorKind.PROGRAMMING),  # a stacked statement, refused
        ("OperationalError", 1213, ErrorKind.CONFLICT),
        ("IntegrityError", 1062, ErrorKind.INTEGRITY),
        ("OperationalError", 1205, ErrorKind.CONFLICT),
    ],
)
def test_statement_errors_keep_the_session(  # type: ignore[no-untyped-def]
    mysql_backend, cls: str, code: int, kind: ErrorKind
) -> None:
    failure = mysql_backend.classify(getattr(pymysql_err, cls)(code, "message"), None)
    assert failure.kind is kind


def test_connect_timeout_is_a_disconnect(mysql_backend) -> None:  # type: ignore[no-untyped-def]
    failure = mysql_backend.classify(TimeoutError("connecting timed out"), None)
    assert failure.kind is ErrorKind.DISCONNECT
