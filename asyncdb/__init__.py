"""asyncdb: an asyncio database layer for PostgreSQL, MySQL/MariaDB and SQLite.

Connections are scoped to asyncio tasks, transaction stacks live in ContextVars holding
immutable values, and every driver error is classified so that a dead connection is never
reused and a failed transaction is never half-committed.
"""

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
    Rollback,
    TransactionAbortedError,
)
from ._records import Record
from ._transaction import Transaction
from ._url import DatabaseURL

__all__ = [
    "CommitOutcomeUnknownError",
    "ConflictError",
    "Connection",
    "DataError",
    "Database",
    "DatabaseError",
    "DatabaseURL",
    "DisconnectionError",
    "IntegrityError",
    "InterfaceError",
    "OperationalError",
    "PoolTimeout",
    "ProgrammingError",
    "Record",
    "Retry",
    "Rollback",
    "Transaction",
    "TransactionAbortedError",
]

__version__ = "0.1.0"

for _name in __all__:
    globals()[_name].__module__ = "asyncdb"
del _name
