"""Primary/replica routing: one pool per host, a monitor, read-your-writes and failover.

Used by Database only when `replicas=` is given, so the single-server path stays as it is.
The Router owns a Node per host (its backend, its pool, its role and lag). Connections see
two pools, `RolePool("primary")` and `RolePool("replica")`, that pick a host at every
checkout: a Connection needs no change to be routed, and a transaction keeps the host it
started on. Roles are never assumed from the URL: they are asked (`server_role`) at connect,
by the monitor every second, and by one shared rediscovery whenever a write meets a
read-only server or the primary's connection is lost.

A Galera cluster (every synced node takes writes, and says "primary") is recognised by the
cluster id all its nodes report: one synced node is the writer (role "primary"), the other
synced nodes serve reads (role "replica"); see `Router._galera_roles`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, TypeVar

from ._backoff import Backoff, Retry
from ._compile import Compiled, Compiler
from ._connection import Connection
from ._exceptions import DisconnectionError, InterfaceError, ReadOnlyError
from ._hooks import Hooks
from ._pool import _ABANDONED, OnConnect, Pool, PooledConnection, fork_generation
from ._url import DEFAULT_PORTS, DatabaseURL
from .backends import create_backend
from .backends.base import Backend, ServerRole

__all__ = ["REPLICA_METHODS", "RolePool", "RoutedConnection", "Router", "parse_replicas"]

logger = logging.getLogger("asyncdb.routing")
T = TypeVar("T")

REPLICA_METHODS = (
    "server_role",
    "write_position",
    "replay_position",
    "position_covers",
    "replica_lag",
    "readonly_session_sql",
)
_TAKE_BACK_CHECKS = 2  # a lagging or lost replica is used again after this many good checks
_HISTORY = 120  # primary positions kept to turn a replica's position into a lag in seconds
# How often writers look for a new primary while there is none (a failover in progress).
_FAILOVER_POLICY = Retry(attempts=1, initial=0.05, factor=1.5, maximum=0.5, jitter=0.2)

# Read-your-writes positions, one per cluster (keyed by its host list): an immutable mapping,
# so a child task that writes never changes what its parent sees.
_POSITIONS: ContextVar[Mapping[tuple[str, ...], str]] = ContextVar(
    "asyncdb_positions", default=MappingProxyType({})
)


def parse_replicas(value: Any) -> list[str] | None:
    """`replicas=`: None (no routing), "auto" (the URL's hosts) or a list of replica URLs."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return []
        return [part for part in value.split(" ") if part] if "://" in value else _bad(value)
    if isinstance(value, list | tuple) and all(isinstance(v, str | DatabaseURL) for v in value):
        return [str(v) if isinstance(v, str) else v.render(hide_password=False) for v in value]
    return _bad(value)


def _bad(value: Any) -> list[str]:
    raise InterfaceError(f'replicas must be "auto" or a list of database URLs, got {value!r}')


class Node:
    """One server: its pool, its role as last seen, and (for a replica) its lag."""

    def __init__(self, url: DatabaseURL, backend: Backend) -> None:
        self.url = url
        self.backend = backend
        host, port = url.hosts[0] if url.hosts else ("localhost", None)
        self.name = f"{host}:{port or DEFAULT_PORTS.get(url.dialect, '')}"
        self.role: str | None = None  # "primary", "replica", None: not known / not answering
        self.state = "down"  # usable, lagging, down (replicas); the primary is "usable"
        self.lag: float | None = None
        self.replayed: str | None = None
        self.good_checks = 0
        self.synced_checks = 0  # a Galera node: rounds in a row it was seen synced
        self.cluster: str | None = None  # a Galera node: its cluster's id
        self.pool: Pool | None = None
        self.pool_role: str | None = None  # the role its pool's sessions were set up for
        self.monitor_raw: Any = None

    def describe(self) -> dict[str, Any]:
        stats = self.pool.stats() if self.pool is not None else {}
        return {
            "role": self.role,
            "state": self.state,
            "lag": self.lag,
            "cluster": self.cluster,
            **stats,
        }


class Router:
    """The hosts of one Database, their roles and pools, and the monitor that keeps both
    up to date."""

    def __init__(
        self,
        url: DatabaseURL,
        backend_options: dict[str, Any],
        replicas: list[str],
        pool_options: dict[str, Any],
        *,
        max_replica_lag: float,
        read_your_writes_wait: float,
        check_interval: float = 1.0,
    ) -> None:
        urls = [url.replace(hostname=host, port=port) for host, port in url.hosts] or [url]
        urls += [DatabaseURL(r) for r in replicas]
        self.nodes: list[Node] = []
        for node_url in urls:
            options = dict(backend_options)
            backend = create_backend(node_url, options)
            self.nodes.append(Node(node_url, backend))
        self.key = tuple(node.name for node in self.nodes)
        self.backend = self.nodes[0].backend
        self.hooks: Hooks = pool_options["hooks"]
        self.max_replica_lag = max_replica_lag
        self.read_your_writes_wait = read_your_writes_wait
        self.monitor_interval = check_interval
        self.reconnect = pool_options.get("reconnect") or "fail_fast"
        self.reconnect_timeout = float(pool_options.get("reconnect_timeout", 30.0))
        self._user_on_connect: OnConnect | None = pool_options.get("on_connect")
        # node pools never back off themselves: the router decides where to reconnect
        self._pool_options = {**pool_options, "reconnect": "fail_fast"}
        self._pool_options.pop("on_connect", None)
        self.primary: Node | None = None
        self.split_brain = False
        self.cluster: str | None = None  # the id of the Galera cluster the hosts form, if so
        self._warned_node_local = False
        self.fallbacks = 0
        self.rediscoveries = 0  # started by a failure (not counting the monitor's rounds)
        self._history: deque[tuple[float, str]] = deque(maxlen=_HISTORY)
        self._refreshing: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._monitor: asyncio.Task[None] | None = None
        self._closed = False
        self._retiring: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Ask every host its role (each within its own connect timeout). With
        reconnect="backoff" keep asking until one answers or reconnect_timeout has passed,
        as a single server's pool keeps trying to connect."""
        backoff = Backoff(self.reconnect_timeout) if self.reconnect == "backoff" else None
        try:
            await self._refresh()
            while all(node.role is None for node in self.nodes):
                delay = backoff.next_delay() if backoff is not None else None
                if delay is None:
                    raise DisconnectionError(
                        "no host answered: " + ", ".join(node.name for node in self.nodes),
                        backend=self.backend.name,
                    )
                logger.warning("no host answered; asking again in %.2fs", delay)
                await asyncio.sleep(delay)
                await self._refresh()
        except BaseException:
            await self.close()  # no monitor connection or pool left behind
            raise
        self._start_monitor()

    def _start_monitor(self) -> None:
        if self._monitor is None and not self._closed:
            self._monitor = asyncio.get_running_loop().create_task(self._monitor_loop())

    async def _open_lazily(self) -> None:
        """A router made in a forked child is opened by its first checkout."""
        await self.refresh()
        self._start_monitor()

    def abandon(self) -> None:
        """In a forked child: every connection (pools and monitor) and task belongs to the
        parent; let them go without any I/O, and keep them referenced so that no finalizer
        touches the parent's sockets."""
        for node in self.nodes:
            if node.pool is not None:
                node.pool._check_fork()
            raw, node.monitor_raw = node.monitor_raw, None
            if raw is not None:
                node.backend.abandon(raw)
                _ABANDONED.append(raw)
        _ABANDONED.extend([self._monitor, self._refreshing, *self._retiring])
        self._monitor = self._refreshing = None
        self._retiring = set()
        self._closed = True

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._monitor, self._refreshing) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for node in self.nodes:
            raw, node.monitor_raw = node.monitor_raw, None
            if raw is not None:
                node.backend.terminate(raw)
            if node.pool is not None:
                await node.pool.close()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        """Summed pool counters, plus `hosts` (role, state, lag, Galera cluster id and
        counters of each host), `primary` (its name or None), `cluster` ("galera" when the
        hosts form one Galera cluster, else None), `fallbacks` (reads sent to the primary
        instead) and `rediscoveries` (of roles, started by a failure)."""
        hosts = {node.name: node.describe() for node in self.nodes}
        totals: dict[str, Any] = {}
        for described in hosts.values():
            for name, value in described.items():
                if name not in ("role", "state", "lag", "cluster"):
                    totals[name] = totals.get(name, 0) + value
        totals.update(
            hosts=hosts,
            primary=self.primary.name if self.primary is not None else None,
            cluster="galera" if self.cluster is not None else None,
            fallbacks=self.fallbacks,
            rediscoveries=self.rediscoveries,
        )
        return totals

    # -- choosing a host ------------------------------------------------------------------

    async def primary_node(self, reconnect: str | None) -> Node:
        """The primary; while there is none (a failover), rediscover roles until one shows
        up: once with fail_fast, until reconnect_timeout with backoff."""
        if self.primary is not None:
            return self.primary
        if self._monitor is None:
            await self._open_lazily()
            if self.primary is not None:
                return self.primary
        backoff = Backoff(self.reconnect_timeout, _FAILOVER_POLICY)
        while True:
            await self.refresh()
            if self.primary is not None:
                return self.primary
            delay = backoff.next_delay() if reconnect == "backoff" else None
            if delay is None:
                raise self._no_primary()
            await asyncio.sleep(delay)

    def _no_primary(self) -> DisconnectionError:
        name = self.backend.name
        if self.split_brain:
            return ReadOnlyError(
                "writes refused: more than one host claims to be the primary ("
                + ", ".join(n.name for n in self.nodes if n.role == "primary")
                + ")",
                backend=name,
            )
        return DisconnectionError(
            "no primary among " + ", ".join(n.name for n in self.nodes), backend=name
        )

    async def acquire_primary(self, reconnect: str | None) -> Checkout:
        backoff: Backoff | None = None
        while True:
            node = await self.primary_node(reconnect)
            try:
                return await self._checkout(node)
            except DisconnectionError:
                self.suspect(node, lost=True)
                if reconnect != "backoff":
                    raise
                backoff = backoff or Backoff(self.reconnect_timeout, _FAILOVER_POLICY)
                delay = backoff.next_delay()
                if delay is None:
                    raise
                await self.refresh()
                await asyncio.sleep(delay)

    async def acquire_replica(self, reconnect: str | None) -> Checkout:
        """A connection to a usable replica that has this context's writes, waiting up to
        read_your_writes_wait for one; else one to the primary (and a routing_fallback)."""
        if self._monitor is None:
            await self._open_lazily()
        wanted = _POSITIONS.get().get(self.key)
        replicas = [n for n in self.nodes if n.role == "replica" and n.state == "usable"]
        if not replicas:
            return await self._fallback("no_replica", reconnect)
        if len(replicas) > 1:
            random.shuffle(replicas)
        backend = self.backend
        if wanted is None:
            ready = replicas  # no write of this context to wait for: any usable replica
        else:
            ready = [
                n
                for n in replicas
                if n.replayed is not None and backend.position_covers(n.replayed, wanted)
            ]
        if ready:
            for node in ready:
                try:
                    return await self._checkout(node)
                except DisconnectionError:
                    self._lost(node)
            return await self._fallback("no_replica", reconnect)
        assert wanted is not None  # none has it yet: wait for one that catches up
        deadline = time.monotonic() + self.read_your_writes_wait
        pause = 0.002
        while True:
            for node in replicas:
                found = await self._caught_up(node, wanted)
                if found is not None:
                    return found
            left = deadline - time.monotonic()
            if left <= 0:
                return await self._fallback("read_your_writes", reconnect)
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    async def _caught_up(self, node: Node, wanted: str) -> Checkout | None:
        """A connection to `node` if it has replayed `wanted` (asked on that connection)."""
        if node.state != "usable":
            return None
        try:
            _, pool, conn = await self._checkout(node)
        except DisconnectionError:
            self._lost(node)
            return None
        try:
            replayed = await node.backend.replay_position(conn.raw)
        except Exception:
            pool.release(conn, discard=True)
            self._lost(node)
            return None
        if replayed is not None:
            node.replayed = _later(node.backend, node.replayed, replayed)
            if node.backend.position_covers(replayed, wanted):
                return node, pool, conn
        pool.release(conn)
        return None

    async def _checkout(self, node: Node) -> Checkout:
        """A connection from the node's pool, opened at most once (the router, not the
        pool, decides where to reconnect)."""
        pool = self._pool(node)
        try:
            return node, pool, await pool.acquire("fail_fast")
        except InterfaceError:
            if not pool._closed or self._closed:
                raise
            # the host changed roles while we waited in its pool's line: choose again
            raise DisconnectionError(
                f"{node.name} changed role while waiting for a connection",
                backend=self.backend.name,
            ) from None

    async def _fallback(self, reason: str, reconnect: str | None) -> Checkout:
        self.fallbacks += 1
        self.hooks.emit("routing_fallback", backend=self.backend.name, reason=reason)
        return await self.acquire_primary(reconnect)

    def warn_node_local(self, sql: str) -> None:
        """A named lock taken on one Galera node does not exist on the others, and the next
        statement may run on another node: say so once per Database (the statement runs)."""
        if self._warned_node_local or "get_lock" not in sql.lower():
            return
        self._warned_node_local = True
        logger.warning(
            "GET_LOCK() locks on one Galera node only, and with replicas= the next statement "
            "may run on another node: hold one connection (db.connection(role='primary')) "
            "for the lock and the work, or let conflicting writes retry (retry=)"
        )

    def note_misrouted_write(self) -> None:
        self.fallbacks += 1
        self.hooks.emit("routing_fallback", backend=self.backend.name, reason="write_on_replica")

    def _lost(self, node: Node) -> None:
        if node.state != "down":
            self._set_state(node, "down", node.lag)
        self._wake.set()

    def _pool(self, node: Node) -> Pool:
        if node.pool is not None and node.pool_role != node.role:
            self._retire_pool(node)
        if node.pool is None:
            node.pool, node.pool_role = self._new_pool(node), node.role
        return node.pool

    def _retire_pool(self, node: Node) -> None:
        """The pool's sessions were set up for another role (a demoted primary's idle
        connections must go): close its idle connections now, the rest as they come back."""
        old, node.pool = node.pool, None
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.close())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def _new_pool(self, node: Node) -> Pool:
        readonly = node.role != "primary"
        return Pool(node.backend, **self._pool_options, on_connect=self._on_connect(node, readonly))

    def _on_connect(self, node: Node, readonly: bool) -> OnConnect | None:
        user = self._user_on_connect
        if not readonly:
            return user
        statements = node.backend.readonly_session_sql()

        async def setup(raw: Any) -> None:
            # run at connect and again after every session reset: a replica session stays
            # read-only, so a misrouted write fails before it does anything
            for sql in statements:
                await node.backend.command(raw, sql)
            if user is not None:
                await user(raw)

        return setup

    # -- read-your-writes -----------------------------------------------------------------

    def advance(self, position: str) -> None:
        """Record, for this context, a position the primary reached after its write
        (an empty one, from a MariaDB primary that has logged nothing, waits for nothing)."""
        if not position:
            return
        positions = _POSITIONS.get()
        current = positions.get(self.key)
        if current is not None and self.backend.position_covers(current, position):
            return
        position = _later(self.backend, current, position)
        _POSITIONS.set(MappingProxyType({**positions, self.key: position}))

    def token(self) -> str:
        position = _POSITIONS.get().get(self.key)
        return "" if position is None else f"{self.backend.name}:{position}"

    def parse_token(self, token: str) -> str | None:
        if not isinstance(token, str):
            raise InterfaceError(f"a consistency token is a str, got {type(token).__name__}")
        if not token:
            return None
        name, sep, position = token.partition(":")
        try:
            if sep != ":" or name != self.backend.name or not position:
                raise ValueError
            self.backend.position_covers(position, position)
            if self._history:  # of the kind this cluster makes (GTID vs Galera on MariaDB)
                self.backend.position_covers(self._history[-1][1], position)
        except (ValueError, InterfaceError):  # InterfaceError: MariaDB's position parsers
            raise InterfaceError(
                f"malformed consistency token {token[:60]!r}: expected one made by "
                f"consistency_token() of a {self.backend.name} database"
            ) from None
        return position

    @contextlib.asynccontextmanager
    async def consistent_with(self, token: str) -> Any:
        position = self.parse_token(token)
        if position is None:
            yield
            return
        before = _POSITIONS.get()
        self.advance(position)
        entered = _POSITIONS.get()
        try:
            yield
        finally:
            if _POSITIONS.get() is entered:  # no write of ours inside: back to before
                _POSITIONS.set(before)

    # -- roles and lag --------------------------------------------------------------------

    def suspect(self, node: Node | None, *, lost: bool = False, read_only: bool = False) -> None:
        """A write met a read-only server, or a primary's connection was lost: start one
        rediscovery (a read-only primary is not used meanwhile)."""
        if read_only and node is not None and node is self.primary:
            self.primary = None
        if self._closed:
            return
        if self._refreshing is None or self._refreshing.done():
            self.rediscoveries += 1
        self._spawn_refresh()

    async def refresh(self) -> None:
        """Rediscover roles now, or wait for the rediscovery already running."""
        await asyncio.shield(self._spawn_refresh())

    def _spawn_refresh(self) -> asyncio.Task[None]:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        return self._refreshing

    async def _monitor_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.monitor_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:  # the monitor must outlive any one failed round
                logger.warning("replica monitor round failed", exc_info=True)

    async def _refresh(self) -> None:
        """One round: every host's role, the primary's position, each replica's lag."""
        results = await asyncio.gather(*(self._check(node) for node in self.nodes))
        now = time.monotonic()
        checked = list(zip(self.nodes, results, strict=True))
        found = [result[0] for result in results]
        cluster = _galera_cluster(found)
        if cluster != self.cluster and self.cluster is not None:
            self._history.clear()  # seqnos of another cluster history say nothing of lag
        self.cluster = cluster
        if self.cluster is not None:
            roles = self._galera_roles(checked)
        else:
            roles = [f.role if f is not None else None for f in found]
        primaries = [
            node for node, role in zip(self.nodes, roles, strict=True) if role == "primary"
        ]
        for (_node, (_, position)), role in zip(checked, roles, strict=True):
            if role == "primary" and position is not None and len(primaries) == 1:
                self._history.append((now, position))
        for (node, (server, position)), role in zip(checked, roles, strict=True):
            self._set_role(node, role)
            if server is not None:
                node.cluster = server.cluster
            if role == "replica":
                self._update_lag(node, position, now)
            elif role is None:
                if node.state != "down":
                    self._set_state(node, "down", None)
            else:
                node.lag, node.state = None, "usable"
        self.split_brain = len(primaries) > 1
        new = primaries[0] if len(primaries) == 1 else None
        if new is not self.primary:
            old, self.primary = self.primary, new
            logger.log(
                logging.WARNING if self._monitor is not None else logging.DEBUG,
                "primary is now %s (was %s)",
                new.name if new else None,
                old.name if old else None,
            )

    def _galera_roles(
        self, checked: list[tuple[Node, tuple[ServerRole | None, str | None]]]
    ) -> list[str | None]:
        """The roles the router gives the nodes of a Galera cluster: writes go to ONE synced
        node (two nodes writing the same rows conflict at COMMIT), the first synced one in
        URL order; the other synced nodes serve reads, with read-only sessions. A node that
        is not synced (desynced, joining, out of the primary component) serves nothing
        (role "replica", state "lagging") until it is synced again. Writes move back to an
        earlier node only once it has been seen synced in _TAKE_BACK_CHECKS rounds in a row,
        so a node that flaps does not drag the writes along."""
        synced: list[Node] = []
        for node, (server, _) in checked:
            ok = server is not None and server.ready and server.cluster == self.cluster
            node.synced_checks = node.synced_checks + 1 if ok else 0
            if ok:
                synced.append(node)
        writer = self._pick_writer(synced)
        roles: list[str | None] = []
        for node, (server, _) in checked:
            if server is None:
                roles.append(None)
            elif server.cluster is None:
                roles.append(server.role)  # an asynchronous replica of a node: a replica
            else:
                roles.append("primary" if node is writer else "replica")
        return roles

    def _pick_writer(self, synced: list[Node]) -> Node | None:
        current = self.primary if self.primary in synced else None
        for node in synced:
            if (
                current is None
                or node is current
                or self._monitor is None
                or node.synced_checks >= _TAKE_BACK_CHECKS
            ):
                return node
        return current

    async def _check(self, node: Node) -> tuple[ServerRole | None, str | None]:
        """(role, position) of a host on its monitor connection; (None, None) if it does not
        answer within its connect timeout."""
        backend = node.backend
        try:
            async with asyncio.timeout(_check_timeout(backend)):
                if node.monitor_raw is None or backend.is_closed(node.monitor_raw):
                    node.monitor_raw = await backend.connect()
                raw = node.monitor_raw
                found = await backend.server_role(raw)
                if found.role == "primary":
                    # a Galera node that is not synced: its position says nothing of lag
                    return found, (await backend.write_position(raw) if found.ready else None)
                # Even a replica not replicating now (MariaDB: a stopped SQL thread) has a
                # known position: its lag grows with the primary's writes, not at once.
                return found, await backend.replay_position(raw)
        except (asyncio.CancelledError, InterfaceError):
            # InterfaceError: the host answered, but asyncdb cannot route over what it is
            # (MySQL's GTIDs): say so, rather than call the host down
            self._drop_monitor_raw(node)
            raise
        except Exception as exc:
            if node.role is not None:
                logger.warning("%s does not answer: %s", node.name, type(exc).__name__)
            self._drop_monitor_raw(node)
            return None, None

    def _drop_monitor_raw(self, node: Node) -> None:
        raw, node.monitor_raw = node.monitor_raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                node.backend.terminate(raw)

    def _set_role(self, node: Node, role: str | None) -> None:
        if role == node.role:
            return
        previous, node.role = node.role, role
        self.hooks.emit(
            "role_change", backend=self.backend.name, host=node.name, role=role, previous=previous
        )
        if role is not None and node.pool is not None and node.pool_role != role:
            self._retire_pool(node)
        if role == "replica":
            node.good_checks = 0

    def _update_lag(self, node: Node, position: str | None, now: float) -> None:
        backend = node.backend
        if position is not None:
            node.replayed = _later(backend, node.replayed, position)
        lag: float | None = None
        if position is not None and self._history:
            # Position-based: 0 if the replica has what the primary had just now, else the
            # age of the oldest primary position it has not replayed yet.
            lag = 0.0
            for seen, primary_position in self._history:
                try:
                    covered = backend.position_covers(position, primary_position)
                except InterfaceError:  # positions of two kinds: its lag is not known
                    lag = None
                    break
                if not covered:
                    lag = now - seen
                    break
        node.lag = lag
        if lag is None or lag > self.max_replica_lag:
            node.good_checks = 0
            if node.state == "usable":
                self._set_state(node, "lagging", lag)
            return
        node.good_checks += 1
        if self._monitor is None and node.state == "down":
            node.state = "usable"  # found at connect, in sync: used at once
        elif node.state != "usable" and node.good_checks >= _TAKE_BACK_CHECKS:
            self._set_state(node, "usable", lag)
        elif node.state == "down":
            self._set_state(node, "lagging", lag)

    def _set_state(self, node: Node, state: str, lag: float | None) -> None:
        node.state = state
        if state == "down":
            node.good_checks = 0
        self.hooks.emit(
            "replica_state", backend=self.backend.name, host=node.name, state=state, lag=lag
        )


Checkout = tuple["Node", Pool, PooledConnection]


def _later(backend: Backend, current: str | None, new: str) -> str:
    """The position that has both. Positions that neither covers (MariaDB GTIDs of two
    replication domains) are merged by the backend's optional `merge_positions`."""
    if current is None or backend.position_covers(new, current):
        return new
    if backend.position_covers(current, new):
        return current
    merge: Callable[[str, str], str] | None = getattr(backend, "merge_positions", None)
    return merge(current, new) if merge is not None else new


def _galera_cluster(found: list[ServerRole | None]) -> str | None:
    """The id of the one Galera cluster the hosts form, or None. Every host that claims to
    be a primary must be a node of that cluster (the synced ones must name the same cluster
    id): two primaries of asynchronous replication, or two clusters, stay a split brain."""
    nodes = [f for f in found if f is not None and f.cluster is not None]
    if not nodes or any(f.role == "primary" and f.cluster is None for f in found if f):
        return None
    ids = {f.cluster for f in nodes if f.ready}
    if len(ids) > 1:
        return None
    return ids.pop() if ids else nodes[0].cluster


def _check_timeout(backend: Backend) -> float:
    timeout = getattr(backend, "_connect_kwargs", {}).get("timeout")
    return float(timeout) if timeout else 10.0


class RolePool(Pool):
    """What a Connection sees as its pool: each checkout goes to the host the router picks
    for this role; each connection goes back to the pool of the host it came from."""

    def __init__(self, router: Router, role: str, **options: Any) -> None:
        for name in ("reconnect_timeout", "on_connect", "min_size"):
            options.pop(name, None)
        super().__init__(router.backend, min_size=0, **options)
        self.router = router
        self.role = role
        # optional backend method: the role the server reported on a connection, no I/O
        self._reported_role: Callable[[Any], str | None] | None = getattr(
            router.backend, "reported_role", None
        )
        self.watch = role == "replica" and self._reported_role is not None

    async def open(self) -> None:
        if self.role == "primary":
            await self.router.open()

    async def close(self) -> None:
        if self.role == "primary":
            await self.router.close()

    def stats(self) -> dict[str, Any]:
        return self.router.stats()

    def _check_fork(self) -> None:
        forked = self._generation != fork_generation()
        super()._check_fork()
        if forked and self.role == "primary":
            self.router.abandon()

    async def acquire(self, reconnect: str | None = None) -> PooledConnection:
        reconnect = reconnect or self.reconnect
        if self.role == "primary":
            node, pool, conn = await self.router.acquire_primary(reconnect)
        else:
            node, pool, conn = await self.router.acquire_replica(reconnect)
        conn.owner = (self, node, pool)
        return conn

    def node_of(self, conn: PooledConnection | None) -> Node | None:
        owner = conn.owner if conn is not None else None
        return owner[1] if owner is not None and owner[0] is self else None

    def release(
        self, conn: PooledConnection, *, discard: bool = False, interrupted: bool = False
    ) -> None:
        owner = conn.owner
        if owner is None or owner[0] is not self:  # not lent by this pool: close it
            self.backend.terminate(conn.raw)
            return
        conn.owner = None
        if self.watch and not discard and not interrupted:
            self.look_at(conn, owner[1])
        owner[2].release(conn, discard=discard, interrupted=interrupted)

    def look_at(self, conn: PooledConnection, node: Node | None = None) -> None:
        """A look at the role the server reported on a replica connection, after a statement
        (no I/O): one whose server stopped being a standby (promoted) starts a rediscovery."""
        assert self._reported_role is not None
        if self._reported_role(conn.raw) == "primary":
            node = node or self.node_of(conn)
            if node is not None and node.role == "replica":
                self.router.suspect(node)


class _Ask:
    """A driver call shaped like a statement, so that Connection._run runs it (wire lock,
    error classification, hooks) with a label in place of SQL."""

    __slots__ = ("_op",)

    def __init__(self, op: Callable[[Any], Awaitable[Any]]) -> None:
        self._op = op

    async def __call__(self, raw: Any, label: str) -> Any:
        return await self._op(raw)


class RoutedConnection(Connection):
    """A task's connection for one role. On the primary, a committed write records the
    primary's position for read-your-writes; a lost connection or a read-only error starts
    a rediscovery of roles."""

    def __init__(self, pool: RolePool, compiler: Compiler) -> None:
        super().__init__(pool, compiler)
        self._role_pool = pool
        self._router = pool.router
        self.role = pool.role

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f" {self.role}>"

    @property
    def node_name(self) -> str | None:
        """The host of the raw connection checked out now, if any."""
        node = self._role_pool.node_of(self._pooled)
        return node.name if node is not None else None

    def _on_error(self, exc: BaseException) -> BaseException:
        node = self._role_pool.node_of(self._pooled)
        error = super()._on_error(exc)
        if self.role == "primary" and isinstance(error, DisconnectionError):
            self._router.suspect(node, read_only=isinstance(error, ReadOnlyError))
        elif isinstance(error, DisconnectionError) and not isinstance(error, ReadOnlyError):
            if node is not None:
                self._router.suspect(node, lost=True)
        return error

    def _run(
        self,
        op: Callable[..., Awaitable[T]],
        *args: Any,
        check_failed: bool = True,
        query: Compiled | None = None,
        timeout: Any = None,
        operation: str = "command",
    ) -> Coroutine[Any, Any, T]:
        """Connection._run, and what routing adds: a write outside a transaction on the
        primary records the primary's position; a statement on a held replica connection is
        followed by a look at the role its server reports. A plain function that hands back
        the statement itself on the common path (a routed read, a statement in a
        transaction): no extra frame is resumed each time the statement waits."""
        if query is not None:
            if query.dirty and self._router.cluster is not None:
                self._router.warn_node_local(query.sql)
            if query.write and self.role == "primary" and not self._levels:
                return self._run_write(op, args, check_failed, query, timeout, operation)
        statement = super()._run(
            op,
            *args,
            check_failed=check_failed,
            query=query,
            timeout=timeout,
            operation=operation,
        )
        if self.role == "replica" and self._pooled is not None and self._role_pool.watch:
            return self._watched(statement)  # held: it goes back to its pool only later
        return statement

    async def _run_write(
        self,
        op: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        check_failed: bool,
        query: Compiled,
        timeout: Any,  # noqa: ASYNC109 (Connection._run's own parameter)
        operation: str,
    ) -> T:
        async with self:  # the position is read in the same session (per session on MariaDB)
            result = await super()._run(
                op,
                *args,
                check_failed=check_failed,
                query=query,
                timeout=timeout,
                operation=operation,
            )
            await self._note_write()
        return result

    async def _watched(self, statement: Coroutine[Any, Any, T]) -> T:
        result = await statement
        pooled = self._pooled
        if pooled is not None:
            self._role_pool.look_at(pooled)
        return result

    async def _commit_level(self, depth: int, name: str | None) -> None:
        await super()._commit_level(depth, name)
        if name is None and self.role == "primary":
            await self._note_write()

    async def _note_write(self) -> None:
        """Read the primary's position after a commit; a failure here must not make the
        committed write look failed (reads then may miss it on a lagging replica)."""
        node = self._role_pool.node_of(self._pooled)
        backend = node.backend if node is not None else self._router.backend
        try:
            position = await self._run(
                _Ask(backend.write_position),
                "-- asyncdb: write position",
                check_failed=False,
            )
        except Exception as exc:
            logger.info("could not read the primary's write position: %s", exc)
            return
        self._router.advance(str(position))
