"""The protocol every backend implements, and the vocabulary it uses to describe errors.

A backend is the only place that touches a driver. It turns our calls into driver calls and
says what a driver exception means (`classify`); it never builds asyncdb exceptions, and it
keeps no transaction state: that lives in `asyncdb._connection` and `asyncdb._transaction`.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from sqlalchemy.engine.interfaces import Dialect

from .._url import DatabaseURL

__all__ = [
    "Backend",
    "ErrorKind",
    "ErrorScope",
    "ExecuteResult",
    "Failure",
    "RawRow",
    "ServerRole",
    "TransactionOptions",
]

RawRow = Sequence[Any]


@dataclass(frozen=True, slots=True)
class ExecuteResult:
    """What a statement did, without guessing: `execute()` has to return one number, this
    keeps all of them.

    `rowcount`: rows inserted, updated or deleted (None when the driver cannot tell).
    `lastrowid`: the rowid/AUTO_INCREMENT value of an INSERT on MySQL and SQLite, else None
    (never a stale value from an earlier statement). `value`: the first value of the first
    row the statement returned (RETURNING), else None.
    """

    rowcount: int | None
    lastrowid: int | None
    value: Any = None

    def databases_value(self, backend_name: str) -> Any:
        """The single number encode/databases' execute() returns: the first value on
        PostgreSQL; on MySQL and SQLite lastrowid, or the row count when it is 0/None."""
        if backend_name == "postgresql":
            return self.value
        return self.lastrowid if self.lastrowid else self.rowcount


class ErrorKind(enum.Enum):
    """What a driver error means for the caller; decides the asyncdb exception class."""

    DISCONNECT = "disconnect"  # the connection is gone or its protocol state is unknown
    CONFLICT = "conflict"  # serialization failure, deadlock, lock wait timeout
    ABORTED = "aborted"  # the server refuses statements until rollback
    INTEGRITY = "integrity"
    PROGRAMMING = "programming"
    DATA = "data"
    OPERATIONAL = "operational"
    INTERFACE = "interface"
    READ_ONLY = "read_only"  # the server (or the session) refuses writes: replica, demoted
    OUTCOME_UNKNOWN = "outcome_unknown"  # the server cannot say whether the commit happened


class ErrorScope(enum.IntEnum):
    """How much of the work in flight the server undid when the error happened."""

    STATEMENT = 0  # only the failed statement; the transaction goes on
    SAVEPOINT = 1  # the innermost transaction level is unusable until rolled back
    TRANSACTION = 2  # the whole transaction is gone (server rolled it back, or the line died)


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified driver error."""

    kind: ErrorKind
    scope: ErrorScope
    sqlstate: str | None = None
    code: int | None = None


@dataclass(frozen=True, slots=True)
class TransactionOptions:
    """Options of an outermost transaction; checked by the backend's `begin_sql`."""

    isolation: str | None = None
    readonly: bool = False


@dataclass(frozen=True, slots=True)
class ServerRole:
    """What a server is in its replication topology, read from the server itself.

    `role`: "primary" (accepts writes) or "replica" (replays another server's writes).
    `ready`: it can serve now (a replica's replication is running; a cluster node is synced).
    `cluster`: an identifier shared by every node of one multi-primary cluster, else None.
    """

    role: str
    ready: bool
    cluster: str | None = None


class Backend(Protocol):
    """One database family behind one driver. Raw connections are the driver's own objects."""

    name: ClassVar[str]
    dialect: Dialect
    url: DatabaseURL
    # One in-memory database that lives in one connection (SQLite ":memory:"): the pool
    # then holds exactly that connection for as long as the Database is connected.
    is_memory: bool
    # True where a connection interrupted mid-call can be brought back to a known state
    # (SQLite, in process); elsewhere it is terminated.
    can_recover: ClassVar[bool]
    # The driver's own row class when it already offers asyncdb's row API (name, index and
    # attribute access, Mapping iteration); plain SQL results are then returned as they are.
    record_class: type | None

    async def connect(self) -> Any:
        """Open one raw connection, in autocommit mode."""

    async def close(self, raw: Any) -> None:
        """Close gracefully (may do I/O)."""

    def terminate(self, raw: Any) -> None:
        """Abort at once without waiting on the peer."""

    def abandon(self, raw: Any) -> None:
        """Forget a connection inherited across fork(): no I/O, no event-loop calls."""

    def orphan(self, raw: Any) -> None:
        """Close a connection that belongs to another (possibly closed) event loop without
        using that loop: close its socket, or stop its worker thread."""

    async def recover(self, raw: Any) -> None:
        """Bring an interrupted connection back to idle (no transaction), or raise."""

    async def cancel(self, raw: Any) -> bool:
        """Stop on the server the statement that a call we interrupted (a timeout, a cancelled
        task) left running on `raw`: a timed-out query must not go on holding locks and a
        server slot. Return True when the statement is known to have ended and the
        connection is back in a known idle protocol state (it may be kept), False when it
        must be discarded. Bounded in time (by the connect timeout); raises nothing but
        CancelledError."""

    def is_closed(self, raw: Any) -> bool:
        """Tell, without I/O, whether the connection is known to be dead."""

    def in_transaction(self, raw: Any) -> bool:
        """Tell, without I/O, whether the server has a transaction open on the connection."""

    async def reset(self, raw: Any) -> Any:
        """Undo every piece of session state a statement may have left (settings, role,
        listeners, locks, temp objects, prepared statements, user variables, attached
        databases...) so that the next task gets a pristine session; return the raw
        connection to keep (the same one, or a fresh one that replaced it). Raise if it
        cannot: the pool then closes the connection."""

    async def ping(self, raw: Any) -> None:
        """Run the cheapest round trip; raise the driver's error if the line is dead."""

    async def command(self, raw: Any, sql: str) -> str | None:
        """Run a parameterless command (BEGIN, SAVEPOINT...); return its status tag if known."""

    async def execute(self, raw: Any, sql: str, args: Sequence[Any]) -> ExecuteResult:
        """Run a statement; say what it did. `lastrowid` must be this statement's own
        (None unless it inserted), never the connection's stale last insert id."""

    async def execute_many(self, raw: Any, sql: str, args: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per parameter set."""

    async def fetch(
        self, raw: Any, sql: str, args: Sequence[Any]
    ) -> tuple[list[str], list[RawRow]]:
        """Run a query and return its column names and all its rows."""

    def stream(
        self, raw: Any, sql: str, args: Sequence[Any], batch: int
    ) -> AsyncIterator[tuple[list[str], list[RawRow]]]:
        """Yield the rows of a query in batches, with a server-side cursor where possible."""

    def begin_sql(self, options: TransactionOptions) -> list[str]:
        """Return the statements that open an outermost transaction with these options."""

    def classify(self, exc: BaseException, raw: Any) -> Failure | None:
        """Say what a driver exception means; `None` if it is not a database error."""

    def transaction_gate(self, options: TransactionOptions) -> tuple[asyncio.Lock, float] | None:
        """A lock (and how long to wait for it) that outermost transactions with these options
        take before BEGIN, where the database admits one writer at a time (SQLite): waiting
        in line in the event loop beats polling the file lock from every connection."""

    def write_gate(self, options: TransactionOptions) -> tuple[asyncio.Lock, float] | None:
        """The same lock, for a transaction that did not take it at BEGIN: taken before its
        first write statement, so readers never wait in line behind writers."""

    # -- replication (network backends; routing between a primary and its replicas) -------

    async def server_role(self, raw: Any) -> ServerRole:
        """Ask the server what it is now: primary or replica, ready or not."""

    async def write_position(self, raw: Any) -> str:
        """The position of the last write this session committed (or the server's latest),
        in the form `replay_position` and `position_covers` understand."""

    async def replay_position(self, raw: Any) -> str | None:
        """How far a replica has replayed its primary's writes; None on a primary."""

    def position_covers(self, replayed: str, wanted: str) -> bool:
        """Tell (pure) whether a replica that replayed up to `replayed` has every write up to
        `wanted`: the test behind read-your-writes."""

    async def replica_lag(self, raw: Any) -> float | None:
        """Seconds a replica is behind its primary, as the server estimates it; None when
        it is not a replica or does not know (replication stopped)."""

    def readonly_session_sql(self) -> list[str]:
        """Statements that make a session refuse writes, even for a privileged login."""

    async def wait_for_position(self, raw: Any, wanted: str, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait on the server until it has replayed `wanted`; False after `timeout` s."""
