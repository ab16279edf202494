"""TLS for real: scripts/servers.sh makes a CA and a role (`asyncdb_tls`) that can only log
in over TLS. The session is encrypted, and a connection that does not trust the CA fails fast
with an asyncdb error."""

from __future__ import annotations

import os
import ssl
import time

import pytest
from conftest import with_driver

from asyncdb import Database, DatabaseError, DatabaseURL

pytestmark = pytest.mark.timeout(60)


_URLS = {"postgresql": "ASYNCDB_TEST_POSTGRES_TLS_URL", "mysql": "ASYNCDB_TEST_MYSQL_TLS_URL"}
DIALECTS = ["postgresql", "mysql", "mysql+asyncmy"]


def _tls(dialect: str) -> tuple[str, str]:
    """The TLS role's URL for a backend id (`mysql+asyncmy` is the MySQL server's) and the CA."""
    family, _, driver = dialect.partition("+")
    url, ca = os.environ.get(_URLS[family]), os.environ.get("ASYNCDB_TEST_CA")
    if not url or not ca:
        if os.environ.get("ASYNCDB_REQUIRE_ALL_BACKENDS") == "1":
            pytest.fail(f"{_URLS[family]} / ASYNCDB_TEST_CA not set: start scripts/servers.sh")
        pytest.skip("no TLS test server configured")
    if driver:
        pytest.importorskip(driver)  # a required run has it (conftest checks)
    return with_driver(url, driver), ca


def _with(url: str, **params: str) -> str:
    parsed = DatabaseURL(url)
    return parsed.replace(options={**parsed.options, **params}).render(hide_password=False)


async def _encrypted(db: Database, dialect: str) -> bool:
    if dialect == "postgresql":
        return bool(await db.fetch_val("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
    row = await db.fetch_one("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
    return row is not None and bool(row[1])


def _ways(ca: str) -> list[tuple[dict[str, str], dict[str, object]]]:
    """(URL parameters, keywords): the same TLS setting written the ways users write it."""
    return [
        ({"ssl": "true", "sslrootcert": ca}, {}),
        ({"ssl": "verify-full", "ssl_ca": ca}, {}),
        ({"ssl": "require"}, {}),
        ({"ssl": "verify-ca", "sslrootcert": ca}, {}),
        ({}, {"ssl": True, "ssl_ca": ca}),
        ({}, {"ssl": ssl.create_default_context(cafile=ca)}),
    ]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_session_is_encrypted(dialect: str) -> None:
    url, ca = _tls(dialect)
    for params, keywords in _ways(ca):
        async with Database(_with(url, **params), max_size=1, **keywords) as db:
            assert await _encrypted(db, dialect), (params, keywords)


@pytest.mark.postgresql
async def test_pg_sslmode_is_accepted() -> None:
    url, ca = _tls("postgresql")
    async with Database(_with(url, sslmode="verify-full", sslrootcert=ca)) as db:
        assert await _encrypted(db, "postgresql")


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_tls_role_cannot_come_in_without_tls(dialect: str) -> None:
    url, _ = _tls(dialect)
    db = Database(_with(url, ssl="false"), connect_timeout=10)
    with pytest.raises(DatabaseError):
        await db.connect()


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_an_untrusted_certificate_fails_fast(dialect: str) -> None:
    url, _ = _tls(dialect)
    db = Database(_with(url, ssl="true"), connect_timeout=20)  # the system CAs: not ours
    started = time.monotonic()
    with pytest.raises(DatabaseError) as info:
        await db.connect()
    assert time.monotonic() - started < 15  # an error, not the timeout
    assert "certificate" in str(info.value).lower()
    assert not isinstance(info.value, ssl.SSLError)
