"""Wire-compatible engines behind the PostgreSQL and MySQL backends, and the error codes in
which they differ from the servers they imitate.

An engine is read once from the server's version string (free on MySQL: the handshake
carries it; `SELECT version()` on PostgreSQL, whose `server_version` parameter is the
imitated version). CockroachDB, YugabyteDB and TiDB cannot be run in asyncdb's test
environment: their rows below come from their documentation and are unit-tested only.
"""

from __future__ import annotations

__all__ = [
    "OUTCOME_UNKNOWN_STATES",
    "TIDB_CONFLICT_CODES",
    "detect_engine",
]

# SQLSTATE 40003 statement_completion_unknown. PostgreSQL defines it; CockroachDB raises it
# for an ambiguous commit ("result is ambiguous"): the transaction may have committed, so
# it must not be retried blindly. (CockroachDB and YugabyteDB ask for a retry with 40001,
# which PostgreSQL's own rows already classify as a conflict.)
OUTCOME_UNKNOWN_STATES = frozenset({"40003"})

# TiDB's own codes that ask for the whole transaction to be run again; TiDB has rolled it
# back. Only read on TiDB: MySQL and MariaDB may give these numbers other meanings.
TIDB_CONFLICT_CODES: dict[int, str] = {
    8002: "SELECT ... FOR UPDATE write conflict (optimistic transaction)",
    8022: "transaction commit failed; safe to retry",
    8028: "the schema changed while the transaction ran",
    9007: "write conflict",
}

_MARKERS: dict[str, tuple[tuple[str, str], ...]] = {
    "postgresql": (("cockroachdb", "cockroachdb"), ("-yb-", "yugabytedb")),
    "mysql": (("-tidb-", "tidb"), ("mariadb", "mariadb")),
}


def detect_engine(version: str, family: str) -> str:
    """Name the engine from its version string; the family itself ("postgresql",
    "mysql") when nothing else is recognised."""
    text = version.lower()
    for marker, engine in _MARKERS.get(family, ()):
        if marker in text:
            return engine
    return family
