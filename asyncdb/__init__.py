"""asyncdb: an asyncio database layer for PostgreSQL, MySQL/MariaDB and SQLite.

Connections are scoped to asyncio tasks, transaction stacks live in ContextVars holding
immutable values, and every driver error is classified so that a dead connection is never
reused and a failed transaction is never half-committed.
"""

from importlib import metadata as _metadata

from ._backoff import Retry
from ._connection import Connection
from ._database import Database
from ._exceptions import (
    CommitOutcomeUnknownError,
    ConflictError,
    DatabaseError,
    DataError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    PoolTimeout,
    ProgrammingError,
    QueryTimeoutError,
    ReadOnlyError,
    Rollback,
    TransactionAbortedError,
)
from ._records import Record
from ._transaction import Transaction
from ._url import DatabaseURL
from .backends.base import ExecuteResult

__all__ = [
    "CommitOutcomeUnknownError",
    "ConflictError",
    "Connection",
    "DataError",
    "Database",
    "DatabaseError",
    "DatabaseURL",
    "DisconnectionError",
    "ExecuteResult",
    "IntegrityError",
    "InterfaceError",
    "OperationalError",
    "PoolTimeout",
    "ProgrammingError",
    "QueryTimeoutError",
    "ReadOnlyError",
    "Record",
    "Retry",
    "Rollback",
    "Transaction",
    "TransactionAbortedError",
]

try:  # one source of truth: the installed distribution's metadata (pyproject.toml)
    __version__ = _metadata.version("asyncdb-layer")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

for _name in __all__:
    globals()[_name].__module__ = "asyncdb"
del _name
