"""Pure logic of replica routing: WAL positions, the consistency token, option parsing."""

from __future__ import annotations

import contextvars

import pytest

from asyncdb import Database, InterfaceError
from asyncdb._hooks import Hooks
from asyncdb._routing import Router, parse_replicas
from asyncdb._url import DatabaseURL
from asyncdb.backends.base import ServerRole
from asyncdb.backends.postgres import parse_lsn

URL = "postgresql://u:secret@127.0.0.1:1,127.0.0.1:2/db"


def _router() -> Router:
    return Router(
        DatabaseURL(URL),
        {},
        [],
        {"hooks": Hooks()},
        max_replica_lag=1.0,
        read_your_writes_wait=0.2,
    )


def test_lsn_parsing_and_covering() -> None:
    assert parse_lsn("0/3000148") == 0x3000148
    assert parse_lsn("16/B374D848") == (0x16 << 32) | 0xB374D848
    backend = _router().backend
    assert backend.position_covers("1/0", "0/FFFFFFFF")
    assert backend.position_covers("0/10", "0/10")
    assert not backend.position_covers("0/F", "0/10")
    for bad in ("", "0", "/1", "1/", "x/1", "0/1/2", "123456789/0"):
        with pytest.raises(ValueError, match="not a PostgreSQL WAL position"):
            parse_lsn(bad)


def test_position_only_grows_and_is_per_context() -> None:
    router = _router()

    def run() -> list[str]:
        seen = [router.token()]
        router.advance("0/20")
        seen.append(router.token())
        router.advance("0/10")  # an older position never replaces a newer one
        seen.append(router.token())
        child = contextvars.copy_context()
        child.run(router.advance, "0/30")  # a child's write does not reach its parent
        seen.append(router.token())
        seen.append(child.run(router.token))
        return seen

    assert contextvars.copy_context().run(run) == [
        "",
        "postgresql:0/20",
        "postgresql:0/20",
        "postgresql:0/20",
        "postgresql:0/30",
    ]
    assert router.token() == ""  # nothing leaked into this context


def test_token_parsing() -> None:
    router = _router()
    assert router.parse_token("postgresql:0/3000148") == "0/3000148"
    assert router.parse_token("") is None
    for bad in ("0/1", "mysql:0/1", "postgresql:nope", "postgresql:0/1:2"):
        with pytest.raises(InterfaceError, match="malformed consistency token"):
            router.parse_token(bad)
    with pytest.raises(InterfaceError, match="is a str"):
        router.parse_token(3)  # type: ignore[arg-type]


def test_mariadb_gtid_tokens_and_host_names() -> None:
    pytest.importorskip("aiomysql")
    router = Router(
        DatabaseURL("mysql://u:secret@db1,127.0.0.1:3307/db"),
        {},
        [],
        {"hooks": Hooks()},
        max_replica_lag=1.0,
        read_your_writes_wait=0.2,
    )
    assert [node.name for node in router.nodes] == ["db1:3306", "127.0.0.1:3307"]

    def run() -> list[str]:
        router.advance("")  # a primary that has logged nothing: nothing to wait for
        seen = [router.token()]
        router.advance("1-2-5")
        router.advance("0-1-20")  # another replication domain: both are waited for
        seen.append(router.token())
        router.advance("0-1-10")  # older in every domain: kept as it was
        seen.append(router.token())
        router.advance("0-3-25")  # newer in one domain: that domain moves on
        seen.append(router.token())
        return seen

    assert contextvars.copy_context().run(run) == [
        "",
        "mysql:0-1-20,1-2-5",
        "mysql:0-1-20,1-2-5",
        "mysql:0-3-25,1-2-5",
    ]
    assert router.parse_token("mysql:0-2-21") == "0-2-21"
    merge = router.backend.merge_positions  # type: ignore[attr-defined]
    assert merge("0-1-7,2-1-3", "0-2-9,1-1-1") == "0-2-9,1-1-1,2-1-3"
    assert merge("0-1-7", "not-a-gtid") == "not-a-gtid"  # not two GTID positions: the newer
    for bad in ("mysql:", "mysql:0-1", "mysql:a-b-c", "postgresql:0/1", "mysql:0-1-2:3"):
        with pytest.raises(InterfaceError, match="malformed consistency token"):
            router.parse_token(bad)


def test_replicas_option() -> None:
    assert parse_replicas(None) is None
    assert parse_replicas("auto") == []
    assert parse_replicas(["postgresql://h/db"]) == ["postgresql://h/db"]
    with pytest.raises(InterfaceError, match="replicas must be"):
        parse_replicas("yes")
    router = _router()
    assert [node.name for node in router.nodes] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert "secret" not in repr(router.nodes[0].url)
    with pytest.raises(InterfaceError, match="target_session_attrs does not apply"):
        Database(URL + "?target_session_attrs=read-write", replicas="auto")
    with pytest.raises(InterfaceError, match="not a postgresql URL"):
        Database(URL, replicas=["mysql://h/db"])
    with pytest.raises(InterfaceError, match="max_replica_lag only apply"):
        Database(URL, max_replica_lag=2)


def test_timing_options() -> None:
    db = Database(URL, replicas="auto", replica_check_interval=0.25, read_your_writes_wait=0)
    assert db._routing is not None
    assert db._routing[2] == {
        "max_replica_lag": 1.0,
        "read_your_writes_wait": 0.0,
        "check_interval": 0.25,
    }
    for name, value in (
        ("replica_check_interval", 0),
        ("replica_check_interval", "soon"),
        ("max_replica_lag", -1),
        ("read_your_writes_wait", float("inf")),
    ):
        with pytest.raises(InterfaceError, match=name):
            Database(URL, replicas="auto", **{name: value})


async def test_a_mysql_server_is_refused_by_name_not_called_down() -> None:
    """Routing needs MariaDB's GTIDs: on MySQL, connect() says so (the backends' I/O is
    replaced; the refusal is the MySQL backend's own, made before any query)."""
    router = Router(
        DatabaseURL("mysql://u:secret@127.0.0.1:1,127.0.0.1:2/db"),
        {},
        [],
        {"hooks": Hooks()},
        max_replica_lag=1.0,
        read_your_writes_wait=0.2,
    )
    roles = iter(["primary", "replica"])
    for node in router.nodes:
        role = next(roles)

        async def connect() -> object:
            return object()

        async def server_role(raw: object, role: str = role) -> ServerRole:
            return ServerRole(role, True)

        node.backend.connect = connect  # type: ignore[method-assign]
        node.backend.server_role = server_role  # type: ignore[method-assign]
        node.backend.terminate = lambda raw: None  # type: ignore[method-assign]
        assert node.backend.engine == "mysql"  # what the server's version string would say
    with pytest.raises(InterfaceError, match=r"not supported on mysql .*MariaDB servers"):
        await router.open()
    assert router._closed and all(node.monitor_raw is None for node in router.nodes)
