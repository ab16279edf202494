"""The statement classifier: which statements may change session state, which may write."""

from __future__ import annotations

import pytest
from sqlalchemy import column, delete, insert, select, table, update

from asyncdb._compile import Compiler
from asyncdb._statements import classify

CLEAN_READS = [
    "SELECT * FROM notes WHERE id = :id",
    "  -- a comment\n /* another */ (SELECT 1)",
    "WITH t AS (SELECT 1) SELECT * FROM t",
    "select count(*) from notes",
    "SHOW search_path",
    "EXPLAIN SELECT 1",
]
CLEAN_WRITES = [
    "INSERT INTO notes (body) VALUES (:b)",
    "UPDATE notes SET body = 'x'",
    "DELETE FROM notes",
    "WITH d AS (DELETE FROM notes RETURNING id) SELECT count(*) FROM d",
    "CREATE TABLE notes (id INT)",
]
TRANSACTION_COMMANDS = ["BEGIN", "START TRANSACTION", "COMMIT", "SAVEPOINT s1", "ROLLBACK"]
DIRTY = [
    "SET search_path TO x",
    "set statement_timeout = 5",
    "SET ROLE other",
    "SET SESSION AUTHORIZATION other",
    "RESET ALL",
    "LISTEN chan",
    "UNLISTEN chan",
    "PREPARE p AS SELECT 1",
    "DEALLOCATE p",
    "CREATE TEMP TABLE t (a int)",
    "CREATE TEMPORARY TABLE t (a int)",
    "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "DO $$BEGIN END$$",
    "CALL proc()",
    "LOCK TABLE notes",
    "DISCARD ALL",
    "LOAD 'x'",
    "PRAGMA foreign_keys = ON",
    "ATTACH DATABASE 'x' AS y",
    "DETACH DATABASE y",
    "HANDLER t OPEN",
    "SELECT set_config('a.b', 'c', false)",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_try_advisory_lock(1)",
    "SELECT GET_LOCK('x', 0)",
    "SELECT @x := 1",
    "SELECT 1 INTO @x",
    "",
    "   ",
    "frobnicate everything",
]


@pytest.mark.parametrize("sql", CLEAN_READS)
def test_clean_reads(sql: str) -> None:
    assert classify(sql) == (False, False)


@pytest.mark.parametrize("sql", CLEAN_WRITES)
def test_clean_writes(sql: str) -> None:
    assert classify(sql) == (False, True)


@pytest.mark.parametrize("sql", TRANSACTION_COMMANDS)
def test_transaction_commands_are_clean(sql: str) -> None:
    assert classify(sql) == (False, False)


@pytest.mark.parametrize("sql", DIRTY)
def test_session_changing_statements_are_dirty(sql: str) -> None:
    assert classify(sql)[0] is True


def test_core_constructs_are_classified_through_the_compile_cache() -> None:
    from sqlalchemy.dialects import postgresql

    notes = table("notes", column("id"), column("body"))
    compiler = Compiler(postgresql.dialect())  # type: ignore[no-untyped-call]
    read, _ = compiler.compile(select(notes).where(notes.c.id == 1), None)
    assert (read.dirty, read.write) == (False, False)
    for stmt in (
        insert(notes).values(body="x"),
        update(notes).values(body="y"),
        delete(notes).where(notes.c.id == 2),
    ):
        compiled, _ = compiler.compile(stmt, None)
        assert (compiled.dirty, compiled.write) == (False, True)
    text, _ = compiler.compile("SET search_path TO x", None)
    assert text.dirty and compiler.compile("SET search_path TO x", None)[0] is text
