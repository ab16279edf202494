"""MySQL's classification table for the codes after which the server closed the session.

Pure logic, once per MySQL driver: the exceptions are built as PyMySQL (aiomysql) and asyncmy
build them from an error packet; the codes that can be caused for real are in
tests/integration/test_mysql_hardening.py and test_classify.py."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from asyncdb import DatabaseURL
from asyncdb.backends import create_backend
from asyncdb.backends.base import ErrorKind, ErrorScope

# scheme -> the module whose exception classes the driver raises
DRIVERS = {"mysql": "pymysql.err", "mysql+asyncmy": "asyncmy.errors"}

DISCONNECTS = [1040, 1053, 1152, 1153, 1156, 1158, 1159, 1160, 1161, 1184, 1927]
DISCONNECTS += [2006, 2013, 2014, 2055, 3032, 3169, 4031]


@pytest.fixture(scope="module", params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest) -> tuple[Any, ModuleType]:
    """(backend, the driver's error module) for one MySQL driver."""
    err = pytest.importorskip(DRIVERS[request.param])
    return create_backend(DatabaseURL(f"{request.param}://u@127.0.0.1/db"), {}), err


@pytest.fixture(scope="module")
def mysql_backend(driver: tuple[Any, ModuleType]) -> Any:
    return driver[0]


@pytest.fixture(scope="module")
def pymysql_err(driver: tuple[Any, ModuleType]) -> ModuleType:
    return driver[1]


@pytest.mark.parametrize("code", DISCONNECTS)
def test_session_closing_codes_are_disconnects(mysql_backend, pymysql_err, code: int) -> None:  # type: ignore[no-untyped-def]
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
    mysql_backend, pymysql_err, cls: str, code: int, kind: ErrorKind
) -> None:
    failure = mysql_backend.classify(getattr(pymysql_err, cls)(code, "message"), None)
    assert failure.kind is kind


def test_connect_timeout_is_a_disconnect(mysql_backend) -> None:  # type: ignore[no-untyped-def]
    failure = mysql_backend.classify(TimeoutError("connecting timed out"), None)
    assert failure.kind is ErrorKind.DISCONNECT


@pytest.mark.parametrize(
    ("cls", "args"),
    [
        ("InterfaceError", (0, "Not connected")),
        ("InterfaceError", (0, "Cancelled during execution")),  # a read was cancelled
        ("Error", ("Already closed",)),  # ping(reconnect=False) on a closed connection
        ("InternalError", ("Packet sequence number wrong - got 5 expected 1",)),
        ("OperationalError", (2006, "MySQL server has gone away")),
    ],
)
def test_client_side_disconnect_reports(  # type: ignore[no-untyped-def]
    mysql_backend, pymysql_err, cls: str, args: tuple[object, ...]
) -> None:
    """The texts both drivers raise once their socket is gone (same words in both)."""
    failure = mysql_backend.classify(getattr(pymysql_err, cls)(*args), None)
    assert failure.kind is ErrorKind.DISCONNECT


def test_the_other_drivers_errors_are_not_ours(driver: tuple[Any, ModuleType]) -> None:
    """Each backend classifies its own driver's exceptions; the other's are not a driver
    error to it (so they are never silently mistaken for one)."""
    backend, err = driver
    other = next(m for m in DRIVERS.values() if m != err.__name__)
    foreign = pytest.importorskip(other).OperationalError(1213, "deadlock")
    assert backend.classify(foreign, None) is None
