"""Pure logic of routing over a Galera cluster: Galera positions and how they compare, the
consistency token, recognising one cluster (or a split brain), and choosing the writer."""

from __future__ import annotations

from typing import Any

import pymysql.err
import pytest

from asyncdb import InterfaceError
from asyncdb._hooks import Hooks
from asyncdb._routing import Node, Router, _galera_cluster
from asyncdb._url import DatabaseURL
from asyncdb.backends.base import ErrorKind, ServerRole
from asyncdb.backends.mysql import MySQLBackend

UUID = "2d672406-ea08-11f1-af77-d296ede00f47"
OTHER = "85724aef-ea07-11f1-a0fa-8a91ffc05348"


def mysql() -> MySQLBackend:
    backend = MySQLBackend(DatabaseURL("mysql://u:p@127.0.0.1/db"), {})
    backend.engine = "mariadb"
    return backend


def router(hosts: int = 3) -> Router:
    names = ",".join(f"127.0.0.1:{port}" for port in range(1, hosts + 1))
    return Router(
        DatabaseURL(f"mysql://u:secret@{names}/db"),
        {},
        [],
        {"hooks": Hooks()},
        max_replica_lag=1.0,
        read_your_writes_wait=0.2,
    )


@pytest.mark.parametrize(
    ("replayed", "wanted", "covered"),
    [
        (f"{UUID}:10", f"{UUID}:10", True),
        (f"{UUID}:11", f"{UUID}:10", True),
        (f"{UUID}:9", f"{UUID}:10", False),
        (f"{UUID.upper()}:10", f"{UUID}:3", True),
        (f"{UUID}:-1", f"{UUID}:0", False),  # nothing committed yet
        (f"{OTHER}:99", f"{UUID}:3", False),  # another cluster's history: not known
    ],
)
def test_galera_position_covers(replayed: str, wanted: str, covered: bool) -> None:
    assert mysql().position_covers(replayed, wanted) is covered


@pytest.mark.parametrize("galera", [f"{UUID}:5", f"{UUID}:0"])
@pytest.mark.parametrize("gtid", ["0-1-5", "0-1-5,1-2-3", ""])
def test_galera_and_gtid_positions_are_never_compared(galera: str, gtid: str) -> None:
    for pair in ((galera, gtid), (gtid, galera)):
        with pytest.raises(InterfaceError, match="cannot compare a Galera position"):
            mysql().position_covers(*pair)


@pytest.mark.parametrize(
    "bad", [f"{UUID}:", f"{UUID}:x", f"{UUID}:-2", f"{UUID}:+5", f"{UUID[:-1]}:5", f"{UUID}:1:2"]
)
def test_malformed_galera_position_is_named(bad: str) -> None:
    with pytest.raises(InterfaceError, match="not a MariaDB GTID position"):
        mysql().position_covers(bad, f"{UUID}:1")


def test_token_is_self_describing() -> None:
    r = router()
    assert r.parse_token(f"mysql:{UUID}:42") == f"{UUID}:42"
    assert r.parse_token("mysql:0-1-42") == "0-1-42"
    r._history.append((0.0, f"{UUID}:7"))  # a Galera cluster: GTID tokens are refused
    assert r.parse_token(f"mysql:{OTHER}:1") == f"{OTHER}:1"  # another history: never covered
    for bad in ("mysql:0-1-42", f"mysql:{UUID}", "postgresql:0/1", f"{UUID}:42"):
        with pytest.raises(InterfaceError, match="malformed consistency token"):
            r.parse_token(bad)
    gtid = router()
    gtid._history.append((0.0, "0-1-7"))  # asynchronous replication: Galera tokens refused
    with pytest.raises(InterfaceError, match="malformed consistency token"):
        gtid.parse_token(f"mysql:{UUID}:42")
    r.advance(f"{UUID}:42")
    assert r.token() == f"mysql:{UUID}:42"


def galera(ready: bool = True, cluster: str | None = UUID) -> ServerRole:
    return ServerRole("primary", ready, cluster)


ASYNC_PRIMARY = ServerRole("primary", True, None)
ASYNC_REPLICA = ServerRole("replica", True, None)


@pytest.mark.parametrize(
    ("found", "cluster"),
    [
        ([galera(), galera()], UUID),
        ([galera(), None, galera(False)], UUID),  # a node down, a node not synced
        ([galera(False), galera(False)], UUID),  # recognised; no writer until one syncs
        ([galera(), galera(False, OTHER)], UUID),  # a node not synced is no claim
        ([galera(), galera(cluster=OTHER)], None),  # two synced clusters: split brain
        ([ASYNC_PRIMARY, galera()], None),  # a GTID primary and a Galera node
        ([ASYNC_PRIMARY, ASYNC_PRIMARY], None),  # two GTID primaries
        ([ASYNC_PRIMARY, ASYNC_REPLICA], None),  # plain asynchronous replication
        ([galera(), ASYNC_REPLICA], UUID),  # an asynchronous replica of a node
        ([None, None], None),
    ],
)
def test_one_galera_cluster_is_recognised(found: list[ServerRole | None], cluster: Any) -> None:
    assert _galera_cluster(found) == cluster


def roles(r: Router, *found: ServerRole | None) -> list[str | None]:
    """One round of _galera_roles; the writer it picks becomes the router's primary, as
    _refresh does."""
    checked = [(node, (f, None)) for node, f in zip(r.nodes, found, strict=True)]
    r.cluster = _galera_cluster(list(found))
    result = r._galera_roles(checked)  # type: ignore[arg-type]
    writers = [node for node, role in zip(r.nodes, result, strict=True) if role == "primary"]
    r.primary = writers[0] if writers else None
    return result


def test_writer_is_the_first_synced_node_and_comes_back_after_two_checks() -> None:
    r = router()
    assert roles(r, galera(), galera(), galera()) == ["primary", "replica", "replica"]
    r._monitor = object()  # type: ignore[assignment]  (the monitor runs from now on)
    assert roles(r, galera(False), galera(), galera()) == ["replica", "primary", "replica"]
    assert roles(r, None, galera(), galera()) == [None, "primary", "replica"]
    assert roles(r, galera(), galera(), galera()) == ["replica", "primary", "replica"]
    assert roles(r, galera(), galera(), galera()) == ["primary", "replica", "replica"]
    # the writer lost: the next synced node at once
    assert roles(r, None, galera(), galera()) == [None, "primary", "replica"]
    assert roles(r, None, galera(False), galera()) == [None, "replica", "primary"]
    assert roles(r, None, galera(False), galera(False)) == [None, "replica", "replica"]
    assert r.primary is None


def test_an_asynchronous_replica_of_a_node_stays_a_replica() -> None:
    r = router()
    assert roles(r, galera(), ASYNC_REPLICA, galera()) == ["primary", "replica", "replica"]


def test_cluster_shows_in_pool_stats() -> None:
    r = router(2)
    roles(r, galera(), galera())
    for node in r.nodes:
        node.cluster = UUID
    stats = r.stats()
    assert (stats["cluster"], stats["primary"]) == ("galera", "127.0.0.1:1")
    assert stats["hosts"]["127.0.0.1:2"]["cluster"] == UUID
    assert isinstance(r.nodes[0], Node)


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (1047, "WSREP has not yet prepared node for application use", ErrorKind.READ_ONLY),
        (1047, "Unknown command", ErrorKind.OPERATIONAL),
    ],
)
def test_a_galera_node_that_is_not_ready_refuses(code: int, message: str, kind: ErrorKind) -> None:
    failure = mysql().classify(pymysql.err.OperationalError(code, message), None)
    assert failure is not None and failure.kind is kind
