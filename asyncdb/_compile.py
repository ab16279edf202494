"""Turn a query (SQL text with `:name` parameters, or a SQLAlchemy Core construct) into the
backend's SQL, its positional arguments and the result processing its column types ask for.

Each distinct query is compiled once per dialect: raw SQL is cached by its text, constructs
by SQLAlchemy's own cache key, so building the same `select()` on every request costs a key
computation, not a compilation.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.elements import TextClause

from ._exceptions import DataError, ProgrammingError
from ._records import RowMeta
from ._statements import classify

__all__ = ["Compiled", "Compiler", "Query"]

Query = str | ClauseElement
Processor = Callable[[Any], Any] | None

_CACHE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Compiled:
    """One compiled query: SQL in the driver's paramstyle, and how to build its arguments."""

    sql: str
    names: tuple[str, ...]  # parameter names in positional order
    processors: tuple[Processor, ...] | None  # bind processors, by position
    result_processors: tuple[Processor, ...] | None  # by result column position
    compiled: Any  # SQLAlchemy's compiled object, for construct_params (constructs only)
    plain: bool = False  # SQL text: no typed columns, rows need no processing or Column keys
    by_object: dict[int, int] | None = None  # id() of a selected column -> result position
    # May change session state (the pool then resets the connection before reuse) / may
    # write (SQLite: the transaction joins the writers' line first); see asyncdb._statements.
    dirty: bool = True
    write: bool = True
    metas: dict[tuple[str, ...], RowMeta] = field(default_factory=dict, compare=False)
    # A construct run without values: for each position, the index of its value among a
    # new cache key's extracted bind parameters, and whether that bind is a callable's.
    extract: tuple[tuple[int, bool], ...] | None = None

    def extracted_args(self, extracted: Sequence[Any]) -> list[Any]:
        """The positional values of a construct seen before, read straight off its new
        cache key's parameters: what construct_params + args() give, without the dicts."""
        assert self.extract is not None
        args = [
            extracted[i].effective_value if call else extracted[i].value for i, call in self.extract
        ]
        if self.processors is not None:
            return self._processed(args)
        return args

    def args(self, values: Mapping[str, Any] | None) -> list[Any]:
        """Order the values positionally, applying bind processors."""
        values = values or {}
        try:
            args = [values[name] for name in self.names]
        except KeyError as exc:
            raise ProgrammingError(f"missing value for query parameter :{exc.args[0]}") from None
        if self.processors is not None:
            return self._processed(args)
        return args

    def _processed(self, args: list[Any]) -> list[Any]:
        assert self.processors is not None
        try:
            return [
                p(v) if p is not None else v for p, v in zip(self.processors, args, strict=True)
            ]
        except (TypeError, ValueError, OverflowError, LookupError):
            return [
                self._process(i, p, v)
                for i, (p, v) in enumerate(zip(self.processors, args, strict=True))
            ]

    def _process(self, index: int, processor: Processor, value: Any) -> Any:
        """One bind processor (a Core column type's), its failure named by parameter."""
        if processor is None:
            return value
        try:
            return processor(value)
        except (TypeError, ValueError, OverflowError, LookupError) as exc:
            raise DataError(f"query parameter {_param_name(self, index)}: {exc}", orig=exc) from exc

    def meta(self, columns: Sequence[str]) -> RowMeta:
        """What the rows of one result share; built once per column list, not per call."""
        key = tuple(columns)
        meta = self.metas.get(key)
        if meta is None:
            processors = self.result_processors
            by_object = self.by_object
            if processors is not None and len(processors) != len(columns):
                processors = None
            if by_object and max(by_object.values()) >= len(columns):
                by_object = None
            if len(self.metas) >= 8:  # `SELECT *` over a table that keeps changing
                self.metas.clear()
            meta = self.metas[key] = RowMeta(columns, processors, by_object)
        return meta


class Compiler:
    """Compiles queries for one dialect, with an LRU cache.

    `adapt`, if given, is the backend's parameter check: it turns one value into what the
    driver is sure to encode, or raises TypeError/ValueError/OverflowError saying why not.
    It runs here, before anything is sent, so the error can name the parameter and a
    transaction is not doomed by a value the server never saw.
    """

    def __init__(self, dialect: Dialect, adapt: Callable[[Any], Any] | None = None) -> None:
        self.dialect = dialect
        self._adapt = adapt
        self._cache: OrderedDict[Any, Compiled] = OrderedDict()

    def _adapted(self, compiled: Compiled, args: list[Any]) -> list[Any]:
        adapt = self._adapt
        if adapt is None:
            return args
        try:
            return [adapt(v) for v in args]
        except (TypeError, ValueError, OverflowError):
            pass
        out = []
        for i, value in enumerate(args):  # again, one by one, to name the culprit
            try:
                out.append(adapt(value))
            except (TypeError, ValueError, OverflowError) as exc:
                raise DataError(
                    f"query parameter {_param_name(compiled, i)}: {exc}", orig=exc
                ) from exc
        return out

    def compile(self, query: Query, values: Mapping[str, Any] | None) -> tuple[Compiled, list[Any]]:
        """Return the compiled query and its positional arguments for `values`."""
        if isinstance(query, str):
            compiled = self._cache.get(query) or self._cached(
                query, lambda: self._compile_text(query)
            )
            unknown = values.keys() - compiled.names if values else None
            if unknown:
                raise ProgrammingError(
                    f"values given for parameters the query does not have: {sorted(unknown)}"
                )
            return compiled, self._adapted(compiled, compiled.args(values))
        if not isinstance(query, ClauseElement):
            raise ProgrammingError(
                "a query must be a SQL string or a SQLAlchemy construct, "
                f"not {type(query).__name__}"
            )
        return self._compile_construct(query, values)

    def compile_many(
        self, query: Query, values_list: Sequence[Mapping[str, Any]]
    ) -> list[tuple[Compiled, list[list[Any]]]]:
        """Compile once per run of parameter sets that share the same keys."""
        groups: list[tuple[Compiled, list[list[Any]]]] = []
        previous_keys: Any = None
        for values in values_list:
            keys = values.keys()
            if keys == previous_keys:
                compiled = groups[-1][0]
                args = (
                    compiled.args(values)
                    if isinstance(query, str)
                    else self._construct_args(compiled, query, values)
                )
                groups[-1][1].append(self._adapted(compiled, args))
            else:
                compiled, args = self.compile(query, values)
                groups.append((compiled, [args]))
                previous_keys = keys
        return groups

    def _cached(self, key: Any, build: Callable[[], Compiled]) -> Compiled:
        cache = self._cache
        compiled = cache.get(key)
        if compiled is None:
            compiled = build()
            cache[key] = compiled
            if len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
        return compiled

    def _compile_text(self, sql: str) -> Compiled:
        return self._finish(text(sql).compile(dialect=self.dialect), None)

    def _compile_construct(
        self, query: ClauseElement, values: Mapping[str, Any] | None
    ) -> tuple[Compiled, list[Any]]:
        keys = tuple(values) if values else ()
        cache_key = _cache_key(query)
        if cache_key is None:  # DDL, or an element that opts out of caching
            compiled = self._compile_element(query, keys, None)
            return compiled, self._adapted(compiled, self._construct_args(compiled, query, values))
        seen = self._cache.get((cache_key.key, keys))
        if seen is not None and seen.extract is not None and not values:
            # The hot path: a construct seen before, its values read off the new cache key.
            return seen, self._adapted(seen, seen.extracted_args(cache_key.bindparams))
        compiled = seen or self._cached(
            (cache_key.key, keys), lambda: self._compile_element(query, keys, cache_key)
        )
        if compiled.compiled is None:
            # IN with a list: the number of parameters depends on the values, so the
            # statement is rendered for this call's values only.
            if values and hasattr(query, "params"):
                query = query.params(**values)
            compiled = self._compile_element(query, (), None, postcompile=True)
            args = compiled.args(_construct_params(compiled.compiled, None, None))
            return compiled, self._adapted(compiled, args)
        params = _construct_params(compiled.compiled, values, cache_key.bindparams)
        return compiled, self._adapted(compiled, compiled.args(params))

    def _construct_args(
        self, compiled: Compiled, query: ClauseElement, values: Mapping[str, Any] | None
    ) -> list[Any]:
        cache_key = _cache_key(query)
        extracted = cache_key.bindparams if cache_key is not None else None
        return compiled.args(_construct_params(compiled.compiled, values, extracted))

    def _compile_element(
        self, query: ClauseElement, keys: tuple[str, ...], cache_key: Any, postcompile: bool = False
    ) -> Compiled:
        kwargs: dict[str, Any] = {"dialect": self.dialect}
        if keys:
            kwargs["column_keys"] = list(keys)
        if cache_key is not None:
            kwargs["cache_key"] = cache_key  # so construct_params can map later values
        if postcompile:
            kwargs["compile_kwargs"] = {"render_postcompile": True}
        compiled = query.compile(**kwargs)
        if getattr(compiled, "post_compile_params", None) and not postcompile:
            dirty, write = classify(compiled.string)
            return Compiled(compiled.string, (), None, None, None, dirty=dirty, write=write)
        return self._finish(compiled, query)

    def _finish(self, compiled: Any, query: ClauseElement | None) -> Compiled:
        names = tuple(getattr(compiled, "positiontup", None) or ())
        processors = None
        if query is not None and not isinstance(query, TextClause):
            found = [_bind_processor(compiled.binds.get(n), self.dialect) for n in names]
            if any(p is not None for p in found):
                processors = tuple(found)
        dirty, write = classify(compiled.string)
        return Compiled(
            sql=compiled.string,
            names=names,
            processors=processors,
            result_processors=_result_processors(query, self.dialect),
            compiled=compiled,
            plain=query is None,
            by_object=_result_positions(compiled) if query is not None else None,
            dirty=dirty,
            write=write,
            extract=_extraction_plan(compiled, names) if query is not None else None,
        )


def _extraction_plan(compiled: Any, names: tuple[str, ...]) -> tuple[tuple[int, bool], ...] | None:
    """Where each positional value sits among the cache key's extracted parameters, when
    every one of them comes from there; None (construct_params does the work) otherwise:
    a required parameter (its error), a literal bound into the statement, DML's collected
    parameters, a rendered post-compile statement."""
    cache_key = getattr(compiled, "cache_key", None)
    matches = getattr(compiled, "_cache_key_bind_match", None)
    if (
        cache_key is None
        or matches is None
        or getattr(compiled, "_collect_params", False)  # SQLAlchemy 2.1's DML parameters
        or getattr(compiled, "_render_postcompile", False)
    ):
        return None
    by_name: dict[str, Any] = {}
    for bind, name in compiled.bind_names.items():
        escaped = compiled.escaped_bind_names.get(name, name)
        by_name.setdefault(escaped, bind)
    position: dict[Any, int] = {}
    for i, original in enumerate(cache_key[1]):
        for bind in matches[0].get(original, ()):
            position.setdefault(bind, i)
    plan = []
    for name in names:
        bind = by_name.get(name)
        if bind is None or bind.required or bind not in position:
            return None
        plan.append((position[bind], bool(bind.callable)))
    return tuple(plan)


def _result_positions(compiled: Any) -> dict[int, int] | None:
    """Map each SQLAlchemy object a result column stands for to that column's position;
    the first wins. The objects live as long as the (cached) compiled query, so do their ids."""
    positions: dict[int, int] = {}
    for i, column in enumerate(getattr(compiled, "_result_columns", None) or ()):
        for obj in column[2]:  # ResultColumn.objects
            positions.setdefault(id(obj), i)
    return positions or None


def _param_name(compiled: Compiled, index: int) -> str:
    """`:name` for a named parameter, else its 1-based position."""
    if index < len(compiled.names):
        return f":{compiled.names[index]}"
    return f"#{index + 1}"


def _construct_params(compiled: Any, values: Mapping[str, Any] | None, extracted: Any) -> Any:
    try:
        return compiled.construct_params(params=values, extracted_parameters=extracted)
    except sa_exc.InvalidRequestError as exc:
        raise ProgrammingError(str(exc)) from exc


def _cache_key(query: ClauseElement) -> Any:
    generate = getattr(query, "_generate_cache_key", None)
    return generate() if generate is not None else None


def _bind_processor(bind: Any, dialect: Dialect) -> Processor:
    if bind is None:
        return None
    processor: Processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
    return processor


def _result_processors(
    query: ClauseElement | None, dialect: Dialect
) -> tuple[Processor, ...] | None:
    columns = getattr(query, "exported_columns", None)
    if not columns:
        return None
    found = tuple(_result_processor(col.type, dialect) for col in columns)
    return found if any(p is not None for p in found) else None


def _result_processor(type_: Any, dialect: Dialect) -> Processor:
    try:
        processor: Processor = type_.dialect_impl(dialect).result_processor(dialect, None)
    except (TypeError, sa_exc.InvalidRequestError):
        # Some types choose by the driver's column type code, which we do not pass; those
        # are the ones the driver already returns in the right Python type (PG numeric).
        return None
    return processor
