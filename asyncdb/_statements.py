"""What a statement may do to the session, read off its text.

The pool resets a connection before the next task gets it only when a statement on it may
have changed session state (settings, role, listeners, locks, temp objects, prepared
statements, user variables, pragmas...): the common path (plain queries, DML, asyncdb's own
transaction commands) pays no extra round trip. The classifier is deliberately conservative:
a statement it does not recognise counts as changing the session.
"""

from __future__ import annotations

import re

__all__ = ["classify", "first_keyword"]

# Statements that read or change rows and nothing else (unless they call a function below).
_CLEAN = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "WITH",
        "VALUES",
        "TABLE",
        "REPLACE",
        "MERGE",
        "UPSERT",
        "EXPLAIN",
        "SHOW",
        "DESCRIBE",
        "DESC",
        # asyncdb's own transaction commands: they end with the transaction
        "BEGIN",
        "START",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT",
        "RELEASE",
        "END",
        # Schema changes are persistent, not session state (CREATE TEMP is caught below)
        "CREATE",
        "ALTER",
        "DROP",
        "TRUNCATE",
        "COMMENT",
        "GRANT",
        "REVOKE",
        "ANALYZE",
        "VACUUM",
        "REINDEX",
        "COPY",
        "NOTIFY",
    }
)
_WRITES = frozenset(
    {"INSERT", "UPDATE", "DELETE", "REPLACE", "MERGE", "UPSERT", "CREATE", "ALTER", "DROP"}
    | {"TRUNCATE", "COMMENT", "GRANT", "REVOKE", "REINDEX", "VACUUM", "ANALYZE", "COPY"}
)
# Function calls and syntax that change the session from inside an otherwise clean statement.
_SESSION_MARKERS = (
    "set_config",
    "advisory_lock",
    "advisory_xact_lock",
    "pg_try_advisory",
    "advisory_unlock",
    "get_lock",
    "release_lock",
    "release_all_locks",
    ":=",
    "into @",
    "set @",
    "lo_open",
    "dblink_connect",
    "pg_listening",
    "nextval",
    "lastval",
    "currval",
    "last_insert_id(",
    "temp",
    "sqlite_temp",
    "load_extension",
)
_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_]+")


def first_keyword(sql: str) -> str:
    """The statement's first keyword, upper-cased, past whitespace, comments and opening
    parentheses ("" if there is none)."""
    start = _LEADING_NOISE.match(sql)
    word = _WORD.match(sql, start.end() if start else 0)
    return word.group().upper() if word is not None else ""


def classify(sql: str) -> tuple[bool, bool]:
    """Return (may change session state, may write) for one statement's text."""
    keyword = first_keyword(sql)
    if not keyword:
        return True, True
    if keyword not in _CLEAN:
        return True, True
    lowered = sql.lower()
    dirty = any(marker in lowered for marker in _SESSION_MARKERS)
    if keyword in ("BEGIN", "START", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "END"):
        return dirty, False
    write = keyword in _WRITES or (
        keyword == "WITH" and re.search(r"\b(insert|update|delete)\b", lowered) is not None
    )
    return dirty, write
