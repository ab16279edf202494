"""The exceptions asyncdb raises, arranged so a caller can catch them by what went wrong.

```
* DatabaseError                 base; the driver's exception is `.orig` and `__cause__`
  x InterfaceError              misuse: not connected, transaction ended out of order, bad option
  x OperationalError            the environment; a retry may help
    + DisconnectionError        the connection is gone; it was discarded, never reused
      - CommitOutcomeUnknownError  the connection died while COMMIT was in flight
      - ReadOnlyError           the server refused a write: a replica, or a demoted primary
    + ConflictError             serialization failure, deadlock, lock timeout: retry it all
    + PoolTimeout               no connection became free in time
    + QueryTimeoutError         a query ran longer than its timeout; it was cancelled on the server
  x TransactionAbortedError     the transaction is in an error state until it is rolled back
  x IntegrityError              a constraint rejected the statement
  x ProgrammingError            the SQL is wrong (syntax, missing table, ...)
  x DataError                   a value is wrong for its column
* Rollback                      control flow: leave a transaction block rolling it back quietly
```
"""

from __future__ import annotations

__all__ = [
    "CommitOutcomeUnknownError",
    "ConflictError",
    "DataError",
    "DatabaseError",
    "DisconnectionError",
    "IntegrityError",
    "InterfaceError",
    "OperationalError",
    "PoolTimeout",
    "ProgrammingError",
    "QueryTimeoutError",
    "ReadOnlyError",
    "Rollback",
    "TransactionAbortedError",
]


class DatabaseError(Exception):
    """Base class of every error asyncdb raises about a database.

    `orig` is the driver's exception (also `__cause__`), `backend` the backend name,
    `sqlstate` the SQLSTATE and `code` the server's error number, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        orig: BaseException | None = None,
        backend: str | None = None,
        sqlstate: str | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.orig = orig
        self.backend = backend
        self.sqlstate = sqlstate
        self.code = code


class InterfaceError(DatabaseError):
    """asyncdb was used wrongly: not connected, transactions ended out of order, a bad option."""


class OperationalError(DatabaseError):
    """Something in the environment failed; running the work again may succeed."""


class DisconnectionError(OperationalError):
    """The connection is gone. It has been discarded; the transaction it carried is lost.

    Inside a transaction every further statement raises until the transaction block is
    left or rolled back; outside one, the next statement gets a fresh connection.
    """


class CommitOutcomeUnknownError(DisconnectionError):
    """The connection died while COMMIT was in flight: the transaction may or may not have
    been committed. Never retried automatically."""


class ReadOnlyError(DisconnectionError):
    "The server refused a write because it is (now) read-only: a replica, or a demoted primary."


class ConflictError(OperationalError):
    """A serialization failure, deadlock or lock wait timeout: retry the whole transaction."""


class PoolTimeout(OperationalError):
    """No connection became free within the acquire timeout."""


class QueryTimeoutError(OperationalError):
    """A query ran longer than its `timeout` (or the database's `query_timeout`). It was
    cancelled on the server, so it holds no lock and no server slot any more; inside a
    transaction, the transaction must be rolled back."""


class TransactionAbortedError(DatabaseError):
    """The transaction is in an error state: an earlier statement failed in a way that undid
    (or may have undid) the transaction. Statements are refused until it is rolled back, or
    rolled back to its savepoint. `__cause__` is the first error."""


class IntegrityError(DatabaseError):
    """A constraint (unique, foreign key, not null, check) rejected the statement."""


class ProgrammingError(DatabaseError):
    """The statement is wrong: syntax error, unknown table or column, wrong parameters."""


class DataError(DatabaseError):
    """A value does not fit its column: out of range, invalid text representation."""


class Rollback(Exception):
    """Raise inside `async with db.transaction():` to roll that transaction back quietly."""
