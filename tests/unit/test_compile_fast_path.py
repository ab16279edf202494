"""A construct seen before has its values read straight off its new cache key (no
construct_params): the arguments must be exactly those of SQLAlchemy's own path (no server)."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import aiomysql
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.dialects.sqlite import aiosqlite

from asyncdb import DataError, ProgrammingError
from asyncdb._compile import Compiler, _construct_params


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


table = sa.Table(
    "t",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(20)),
    sa.Column("when", sa.DateTime),
    sa.Column("color", sa.Enum(Color)),
    sa.Column("odd name%", sa.Integer),  # escaped bind names
    sa.Column("shade", sa.Enum(Color, native_enum=False, validate_strings=True)),
)
other = sa.Table("o", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("t_id", sa.Integer))
DIALECTS = [asyncpg.dialect(), aiomysql.dialect(), aiosqlite.dialect()]
C = table.c

# Each builds one construct from a value; two calls differ only in their values.
BUILDERS: dict[str, Callable[[int], Any]] = {
    "where": lambda i: sa.select(table).where(C.id == i),
    "two binds": lambda i: sa.select(C.id).where(C.id > i, C.name == f"n{i}"),
    "same value twice": lambda i: sa.select(C.id).where(sa.or_(C.id == i, C.id + 1 == i)),
    "limit offset": lambda i: sa.select(C.id).order_by(C.id).limit(i + 1).offset(i),
    "escaped name": lambda i: sa.select(C.id).where(table.c["odd name%"] == i),
    "typed": lambda i: sa.select(C.id).where(
        C.when > datetime.datetime(2020, 1, 1 + i % 28), C.color == list(Color)[i % 2]
    ),
    "join": lambda i: (
        sa.select(C.id, other.c.id).join(other, other.c.t_id == C.id).where(other.c.id == i)
    ),
    "subquery": lambda i: sa.select(C.id).where(
        C.id.in_(sa.select(other.c.t_id).where(other.c.id < i).scalar_subquery())
    ),
    "update": lambda i: sa.update(table).where(C.id == i).values(name=f"n{i}"),
    "delete": lambda i: sa.delete(table).where(C.id == i),
    "insert": lambda i: sa.insert(table).values(id=i, name=f"n{i}"),
    "text with binds": lambda i: sa.text("SELECT :a + :b").bindparams(a=i, b=2 * i),
    "callable bind": lambda i: sa.select(C.id).where(
        C.id == sa.bindparam("x", callable_=lambda: i)
    ),
    "literal": lambda i: sa.select(sa.literal(i), C.id).where(C.id == i),
}


def slow_args(compiler: Compiler, query: Any) -> list[Any]:
    """What asyncdb computed before the fast path: construct_params, then args()."""
    key = query._generate_cache_key()
    compiled = compiler._cache[(key.key, ())]
    params = _construct_params(compiled.compiled, None, key.bindparams)
    return compiler._adapted(compiled, compiled.args(params))


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_seen_construct_gets_the_same_arguments(dialect: sa.Dialect, name: str) -> None:
    build = BUILDERS[name]
    compiler = Compiler(dialect)
    first, first_args = compiler.compile(build(1), None)
    for i in (2, 3, 7):
        compiled, args = compiler.compile(build(i), None)
        assert compiled is first  # compiled once, then served from the cache
        assert args == slow_args(compiler, build(i)), name
        assert args != first_args or name == "literal", name  # new values, not the first call's


def test_fast_path_is_taken_for_a_plain_select() -> None:
    """The plain select() of a request handler takes the fast path (else this file would test
    nothing): its compiled query carries an extraction plan."""
    compiler = Compiler(asyncpg.dialect())
    compiled, _ = compiler.compile(BUILDERS["two binds"](5), None)
    assert compiled.extract is not None
    assert compiler.compile(BUILDERS["two binds"](6), None)[1] == [6, "n6"]


def test_required_bind_still_raises() -> None:
    compiler = Compiler(asyncpg.dialect())
    query = sa.select(C.id).where(C.id == sa.bindparam("x"))
    with pytest.raises(ProgrammingError, match="x"):
        compiler.compile(query, None)
    with pytest.raises(ProgrammingError, match="x"):
        compiler.compile(sa.select(C.id).where(C.id == sa.bindparam("x")), None)
    assert compiler.compile(query, {"x": 4})[1] == [4]


def test_bad_value_is_still_named() -> None:
    """A bind processor failing on the fast path names the parameter, as before."""
    compiler = Compiler(aiosqlite.dialect())
    compiled, args = compiler.compile(sa.select(C.id).where(C.shade == Color.RED), None)
    assert compiled.extract is not None and args == ["RED"]
    with pytest.raises(DataError, match="query parameter :shade_1: "):
        compiler.compile(sa.select(C.id).where(C.shade == "purple"), None)
