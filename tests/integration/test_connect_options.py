"""Connect timeouts that bound the whole handshake, and the URL options people write."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator

import pytest
from conftest import backends, driver_params, server_urls, with_driver

from asyncdb import Database, DatabaseURL, DisconnectionError, InterfaceError

pytestmark = pytest.mark.timeout(60)


class SilentServer:
    """Accepts TCP connections and never writes a byte: a hung server, or a wrong port behind
    a proxy. Records when each client hangs up, to prove nothing was left open."""

    def __init__(self) -> None:
        self.accepted = 0
        self.closed = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while await reader.read(65536):
                pass  # swallow whatever the client sends (an SSL request, a startup packet)
        except OSError:
            pass
        finally:
            self.closed += 1
            writer.close()


@pytest.fixture
async def silent() -> AsyncIterator[tuple[SilentServer, int]]:
    handler = SilentServer()
    server = await asyncio.start_server(handler.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield handler, port
    finally:
        server.close()
        await server.wait_closed()


@backends("postgresql", "mysql")
async def test_connect_timeout_bounds_the_handshake(
    backend: str, driver: str, silent: tuple[SilentServer, int]
) -> None:
    handler, port = silent
    url = with_driver(f"{backend}://user:s3cr3t-pw@127.0.0.1:{port}/db", driver)
    db = Database(url, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(DisconnectionError) as info:
        await db.connect()
    assert time.monotonic() - started < 30  # bounded; the exact time is the machine's business
    message = str(info.value)
    assert "connect_timeout" in message
    assert f"127.0.0.1:{port}" in message
    assert "s3cr3t-pw" not in message and "s3cr3t-pw" not in repr(info.value)
    assert handler.accepted >= 1
    for _ in range(100):  # the half-open connection was closed: the server sees EOF
        if handler.closed == handler.accepted:
            break
        await asyncio.sleep(0.05)
    assert handler.closed == handler.accepted
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert not db.is_connected


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_connect_timeout_is_named(backend: str, db_url: str, value: str) -> None:
    with pytest.raises(InterfaceError, match="connect_timeout"):
        Database(db_url, connect_timeout=value)


async def test_connect_timeout_is_accepted_everywhere(db_url: str) -> None:
    async with Database(db_url, connect_timeout=30) as db:
        assert await db.fetch_val("SELECT 1") == 1


async def test_a_huge_connect_timeout_is_accepted(db_url: str) -> None:
    """asyncmy refuses a timeout over a year with a ValueError of its own: never seen."""
    async with Database(db_url, connect_timeout=10**9) as db:
        assert await db.fetch_val("SELECT 1") == 1


def _with(url: str, **params: str) -> str:
    parsed = DatabaseURL(url)
    return str(parsed.replace(options={**parsed.options, **params}).render(hide_password=False))


@pytest.fixture
def pg_url() -> str:
    url = server_urls().get("postgresql")
    if url is None:
        pytest.skip("no PostgreSQL server configured")
    return url


@pytest.fixture(params=driver_params("mysql"))
def mysql_url(request: pytest.FixtureRequest) -> str:
    url = server_urls().get("mysql")
    if url is None:
        pytest.skip("no MySQL server configured")
    return with_driver(url, request.param)


@pytest.mark.postgresql
async def test_pg_libpq_parameters(pg_url: str) -> None:
    url = _with(
        pg_url,
        application_name="harden-app",
        options="-c search_path=harden_schema,public -c statement_timeout=7s",
        target_session_attrs="any",
        connect_timeout="5",
        sslmode="disable",
    )
    async with Database(url) as db:
        assert await db.fetch_val("SHOW application_name") == "harden-app"
        assert await db.fetch_val("SELECT current_setting('search_path')") == "harden_schema,public"
        assert await db.fetch_val("SHOW statement_timeout") == "7s"
        assert await db.fetch_val("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") in (
            False,
            None,
        )


@pytest.mark.postgresql
async def test_pg_through_the_unix_socket(pg_url: str) -> None:
    socket_dir = os.environ.get("ASYNCDB_PG_SOCKET_DIR")
    if not socket_dir:
        pytest.skip("ASYNCDB_PG_SOCKET_DIR not set")
    parsed = DatabaseURL(pg_url)
    for params in ({"host": socket_dir}, {"unix_sock": socket_dir}):
        url = parsed.replace(hostname="", port=parsed.port, options=params)
        assert url.hostname == socket_dir
        async with Database(url) as db:
            # over a unix socket the server sees no client address
            assert await db.fetch_val("SELECT inet_client_addr()") is None


@pytest.mark.postgresql
def test_pg_bad_libpq_values_are_named(pg_url: str) -> None:
    with pytest.raises(InterfaceError, match="options"):
        Database(_with(pg_url, options="search_path=x"))
    with pytest.raises(InterfaceError, match="ssl"):
        Database(_with(pg_url, sslmode="sometimes"))
    with pytest.raises(InterfaceError, match="bogus"):
        Database(_with(pg_url, bogus="1"))


@pytest.mark.mysql
async def test_mysql_init_command_and_charset(mysql_url: str) -> None:
    url = _with(mysql_url, init_command="SET time_zone = '+03:00'", charset="latin1")
    async with Database(url) as db:
        assert await db.fetch_val("SELECT @@session.time_zone") == "+03:00"
        assert await db.fetch_val("SELECT @@character_set_client") == "latin1"


@pytest.mark.mysql
def test_mysql_bad_ssl_value_is_named(mysql_url: str) -> None:
    with pytest.raises(InterfaceError, match="ssl"):
        Database(_with(mysql_url, ssl="prefer"))
    with pytest.raises(InterfaceError, match="bogus"):
        Database(_with(mysql_url, bogus="1"))


@pytest.mark.postgresql
async def test_pg_multi_host_url_tries_each_host(pg_url: str) -> None:
    parsed = DatabaseURL(pg_url)
    with socket.socket() as probe:  # a port nothing listens on: bound, never listening
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
        url = pg_url.replace(
            f"@{parsed.hostname}:{parsed.port}/", f"@127.0.0.1:{dead},127.0.0.1:{parsed.port}/"
        )
        assert DatabaseURL(url).hosts == [("127.0.0.1", dead), ("127.0.0.1", parsed.port)]
        async with Database(url) as db:
            assert await db.fetch_val("SELECT inet_server_port()") == parsed.port


@pytest.mark.mysql
async def test_mysql_through_the_unix_socket(mysql_url: str) -> None:
    path = os.environ.get("ASYNCDB_MYSQL_SOCKET")
    if not path:
        pytest.skip("ASYNCDB_MYSQL_SOCKET not set")
    parsed = DatabaseURL(mysql_url)
    for params in ({"unix_socket": path}, {"unix_sock": path}):
        url = parsed.replace(hostname="", port=None, options=params)
        async with Database(url) as db:
            info = await db.fetch_val("SELECT USER()")
            assert str(info).endswith("@localhost")  # a socket client, not 127.0.0.1
