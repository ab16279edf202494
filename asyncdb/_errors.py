"""The one place where a classified driver error becomes an asyncdb exception."""

from __future__ import annotations

from ._exceptions import (
    CommitOutcomeUnknownError,
    ConflictError,
    DatabaseError,
    DataError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    ReadOnlyError,
    TransactionAbortedError,
)
from .backends.base import Backend, ErrorKind, Failure

__all__ = ["driver_error"]

_ERROR_CLASSES: dict[ErrorKind, type[DatabaseError]] = {
    ErrorKind.DISCONNECT: DisconnectionError,
    ErrorKind.CONFLICT: ConflictError,
    ErrorKind.ABORTED: TransactionAbortedError,
    ErrorKind.INTEGRITY: IntegrityError,
    ErrorKind.PROGRAMMING: ProgrammingError,
    ErrorKind.DATA: DataError,
    ErrorKind.OPERATIONAL: OperationalError,
    ErrorKind.INTERFACE: InterfaceError,
    ErrorKind.READ_ONLY: ReadOnlyError,
    ErrorKind.OUTCOME_UNKNOWN: CommitOutcomeUnknownError,
}


def driver_error(backend: Backend, failure: Failure, exc: BaseException) -> DatabaseError:
    """Build the asyncdb exception for a classified driver error (`orig` = the driver's)."""
    cls = _ERROR_CLASSES[failure.kind]
    detail = str(exc) or repr(exc)
    return cls(
        f"{backend.name}: {detail}",
        orig=exc,
        backend=backend.name,
        sqlstate=failure.sqlstate,
        code=failure.code,
    )
