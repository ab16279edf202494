"""The compiler: paramstyles per dialect, caching, and clear errors (no server)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import aiomysql
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.dialects.sqlite import aiosqlite

from asyncdb import ProgrammingError
from asyncdb._compile import Compiler

table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("name", sa.String))


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (asyncpg.dialect(), "SELECT $1, $2, $1"),
        (aiomysql.dialect(), "SELECT %s, %s, %s"),
        (aiosqlite.dialect(), "SELECT ?, ?, ?"),
    ],
)
def test_text_paramstyle(dialect: sa.Dialect, expected: str) -> None:
    compiled, args = Compiler(dialect).compile("SELECT :a, :b, :a", {"a": 1, "b": 2})
    assert compiled.sql == expected
    assert args == ([1, 2] if "$" in expected else [1, 2, 1])


def test_text_is_cached_and_percent_doubled_for_mysql() -> None:
    compiler = Compiler(aiomysql.dialect())
    first, _ = compiler.compile("SELECT '50%' WHERE 1 = :x", {"x": 1})
    second, _ = compiler.compile("SELECT '50%' WHERE 1 = :x", {"x": 2})
    assert first is second
    assert "50%%" in first.sql


def test_construct_cache_binds_new_values() -> None:
    compiler = Compiler(asyncpg.dialect())
    a, args_a = compiler.compile(sa.select(table.c.name).where(table.c.id == 1), None)
    b, args_b = compiler.compile(sa.select(table.c.name).where(table.c.id == 2), None)
    assert a is b
    assert (args_a, args_b) == ([1], [2])


def test_insert_with_values_uses_column_keys() -> None:
    compiled, args = Compiler(aiosqlite.dialect()).compile(table.insert(), {"id": 1, "name": "x"})
    assert compiled.sql == "INSERT INTO t (id, name) VALUES (?, ?)"
    assert args == [1, "x"]


def test_missing_and_unknown_parameters() -> None:
    compiler = Compiler(aiosqlite.dialect())
    with pytest.raises(ProgrammingError, match=":b"):
        compiler.compile("SELECT :a, :b", {"a": 1})
    with pytest.raises(ProgrammingError, match="'z'"):
        compiler.compile("SELECT :a", {"a": 1, "z": 2})
    with pytest.raises(ProgrammingError, match="SQL string or a SQLAlchemy construct"):
        compiler.compile(42, None)  # type: ignore[arg-type]
