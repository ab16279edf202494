"""Engines that speak the PostgreSQL or MySQL protocol but cannot run here (CockroachDB,
YugabyteDB, TiDB): detection from the version string and their error codes, from their
documentation. Also the pure pieces of MariaDB replication: GTID positions, read-only
codes, the wsrep_sync_wait option."""

from __future__ import annotations

import asyncpg
import pymysql.err
import pytest

from asyncdb import (
    CommitOutcomeUnknownError,
    ConflictError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    ReadOnlyError,
)
from asyncdb._errors import driver_error
from asyncdb._url import DatabaseURL
from asyncdb.backends._engines import detect_engine
from asyncdb.backends.base import ErrorKind, ErrorScope, Failure
from asyncdb.backends.mysql import MySQLBackend
from asyncdb.backends.postgres import PostgresBackend


def mysql(engine: str = "mariadb", **options: str) -> MySQLBackend:
    backend = MySQLBackend(DatabaseURL("mysql://u:p@127.0.0.1/db"), dict(options))
    backend.engine = engine
    return backend


def postgres() -> PostgresBackend:
    return PostgresBackend(DatabaseURL("postgresql://u:p@127.0.0.1/db"), {})


@pytest.mark.parametrize(
    ("version", "family", "engine"),
    [
        ("CockroachDB CCL v23.1.11 (x86_64-pc-linux-gnu, built 2023/09/27, go1.19.10)",
         "postgresql", "cockroachdb"),
        ("PostgreSQL 11.2-YB-2.20.1.0-b0 on x86_64-pc-linux-gnu, compiled by clang 16.0.6",
         "postgresql", "yugabytedb"),
        ("PostgreSQL 15.5 (Debian 15.5-0+deb12u1) on x86_64-pc-linux-gnu", "postgresql",
         "postgresql"),
        ("8.0.11-TiDB-v7.5.0", "mysql", "tidb"),
        ("5.7.25-TiDB-v6.5.0", "mysql", "tidb"),
        ("5.5.5-10.11.19-MariaDB-0+deb12u1", "mysql", "mariadb"),
        ("10.11.19-MariaDB-0+deb12u1", "mysql", "mariadb"),
        ("8.0.36", "mysql", "mysql"),
    ],
)  # fmt: skip
def test_engine_from_version(version: str, family: str, engine: str) -> None:
    assert detect_engine(version, family) == engine


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.SerializationError("restart transaction: TransactionRetryError"),
        asyncpg.exceptions.SerializationError("could not serialize access (YugabyteDB)"),
    ],
)  # fmt: skip
def test_retry_errors_of_cockroachdb_and_yugabytedb_are_conflicts(exc: Exception) -> None:
    backend = postgres()
    failure = backend.classify(exc, None)
    assert failure == Failure(ErrorKind.CONFLICT, ErrorScope.TRANSACTION, sqlstate="40001")
    assert isinstance(driver_error(backend, failure, exc), ConflictError)


def test_cockroachdb_ambiguous_commit_is_an_unknown_outcome() -> None:
    backend = postgres()
    exc = asyncpg.exceptions.StatementCompletionUnknownError("result is ambiguous")
    failure = backend.classify(exc, None)
    assert failure == Failure(ErrorKind.OUTCOME_UNKNOWN, ErrorScope.TRANSACTION, "40003")
    error = driver_error(backend, failure, exc)
    # never retried by transaction(retry=...): the commit may have happened
    assert isinstance(error, CommitOutcomeUnknownError) and error.sqlstate == "40003"


@pytest.mark.parametrize("code", [8002, 8022, 8028, 9007])
def test_tidb_retry_codes_are_conflicts_on_tidb_only(code: int) -> None:
    exc = pymysql.err.OperationalError(code, "Write conflict, txnStartTS=1 ... [try again later]")
    on_tidb = mysql("tidb").classify(exc, None)
    assert on_tidb == Failure(ErrorKind.CONFLICT, ErrorScope.TRANSACTION, None, code)
    assert isinstance(driver_error(mysql("tidb"), on_tidb, exc), ConflictError)
    assert mysql("mariadb").classify(exc, None) == Failure(
        ErrorKind.OPERATIONAL, ErrorScope.STATEMENT, None, code
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (1290, "The MariaDB server is running with the --read-only option so it cannot "
               "execute this statement"),
        (1290, "The MySQL server is running with the --super-read-only option so it cannot "
               "execute this statement"),
        (1792, "Cannot execute statement in a READ ONLY transaction"),
    ],
)  # fmt: skip
def test_read_only_refusals(code: int, message: str) -> None:
    backend = mysql()
    exc = pymysql.err.InternalError(code, message)
    failure = backend.classify(exc, None)
    assert failure == Failure(ErrorKind.READ_ONLY, ErrorScope.STATEMENT, None, code)
    error = driver_error(backend, failure, exc)
    assert type(error) is ReadOnlyError and isinstance(error, DisconnectionError)


def test_1290_for_another_option_is_not_read_only() -> None:
    message = "The MariaDB server is running with the --secure-file-priv option so it cannot"
    exc = pymysql.err.InternalError(1290, message)
    failure = mysql().classify(exc, None)
    assert failure is not None and failure.kind is ErrorKind.OPERATIONAL
    assert type(driver_error(mysql(), failure, exc)) is OperationalError


@pytest.mark.parametrize(
    ("replayed", "wanted", "covered"),
    [
        ("0-1-10", "0-1-10", True),
        ("0-1-11", "0-1-10", True),
        ("0-1-9", "0-1-10", False),
        ("0-2-12", "0-1-10", True),  # another server wrote later in the same domain
        ("0-1-10,1-3-5", "1-3-5", True),
        ("0-1-10,1-3-4", "0-1-3,1-3-5", False),  # every domain must be covered
        ("0-1-10", "1-3-1", False),  # a domain the replica never saw
        ("", "0-1-1", False),
        ("", "", True),
        ("0-1-1", "", True),
        (" 0-1-10 , 1-3-5 ", "1-3-5,0-1-10", True),
    ],
)
def test_gtid_position_covers(replayed: str, wanted: str, covered: bool) -> None:
    assert mysql().position_covers(replayed, wanted) is covered


@pytest.mark.parametrize("bad", ["0-1", "a-b-c", "0-1-2-3", "0:1:2", "3E11AA47-71CA:1-5"])
def test_malformed_gtid_position_is_named(bad: str) -> None:
    with pytest.raises(InterfaceError, match="not a MariaDB GTID position"):
        mysql().position_covers(bad, "0-1-1")
    with pytest.raises(InterfaceError, match="not a MariaDB GTID position"):
        mysql().position_covers("0-1-1", bad)


def test_readonly_session_sql() -> None:
    assert mysql().readonly_session_sql() == ["SET SESSION TRANSACTION READ ONLY"]


@pytest.mark.parametrize(("value", "sql"), [("1", 1), ("0", 0), ("15", 15), (" 3 ", 3)])
def test_wsrep_sync_wait_option(value: str, sql: int) -> None:
    assert mysql(wsrep_sync_wait=value)._session_sql == [f"SET SESSION wsrep_sync_wait = {sql}"]
    assert mysql()._session_sql == []


@pytest.mark.parametrize("value", ["16", "-1", "yes", "1.5", ""])
def test_wsrep_sync_wait_option_is_checked(value: str) -> None:
    with pytest.raises(InterfaceError, match="wsrep_sync_wait must be an integer from 0 to 15"):
        mysql(wsrep_sync_wait=value)
