"""COPY on PostgreSQL: the caller's records, byte source and output, wrapped for the driver.

COPY runs the caller's own code in the middle of a statement (the records iterable, the
source's `read()`, the output callable). When that code fails, the failure is the caller's,
not the database's: it is marked (`CallbackFailed`) so that it is neither classified as a
driver error (an OSError from a file would look like a lost connection) nor lost, and it
reaches the caller as raised. A record the driver cannot send is a `BadRecord`, named by its
position, so that the caller gets a DataError saying which record was wrong.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any

from ._exceptions import ProgrammingError

__all__ = [
    "COPY_IN_OPTIONS",
    "COPY_OUT_OPTIONS",
    "BadRecord",
    "CallbackFailed",
    "RecordFeed",
    "byte_sink",
    "byte_source",
    "check_copy_options",
    "check_names",
    "copied_rows",
]

# COPY options as asyncpg names them (see PostgreSQL's COPY documentation).
COPY_OUT_OPTIONS = frozenset(
    {"format", "oids", "delimiter", "null", "header", "quote", "escape", "force_quote", "encoding"}
)
COPY_IN_OPTIONS = (COPY_OUT_OPTIONS - {"force_quote"}) | {
    "freeze",
    "force_not_null",
    "force_null",
    "where",
}
_CHUNK = 512 * 1024  # bytes read from a file source at a time (asyncpg's own size)


class CallbackFailed(Exception):
    """The caller's code run by COPY (records, source, output) raised `error`."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class BadRecord(Exception):
    """A record COPY cannot send: not a sequence, the wrong number of values, or a value
    its column type cannot encode."""


def check_copy_options(method: str, options: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ProgrammingError(
            f"{method}() got unknown COPY options: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(allowed))})"
        )


def check_names(
    method: str, table: Any, columns: Any, schema_name: Any
) -> tuple[str, list[str] | None, str | None]:
    """Check the table, column and schema names; return them as the driver takes them."""
    if not isinstance(table, str) or not table:
        raise ProgrammingError(f"{method}() needs a table name (a non-empty str), got {table!r}")
    if schema_name is not None and (not isinstance(schema_name, str) or not schema_name):
        raise ProgrammingError(f"{method}(): schema_name must be a non-empty str")
    if columns is None:
        return table, None, schema_name
    if isinstance(columns, str | bytes) or not isinstance(columns, Iterable):
        raise ProgrammingError(
            f"{method}(): columns must be a list of column names, got {columns!r}"
        )
    names = list(columns)
    if not names or not all(isinstance(c, str) and c for c in names):
        raise ProgrammingError(
            f"{method}(): columns must be a non-empty list of column names, got {names!r}"
        )
    return table, names, schema_name


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def target_sql(table: str, columns: Sequence[str] | None, schema_name: str | None) -> str:
    """`"schema"."table" ("a", "b")`: how the COPY statement names its target."""
    target = quote_ident(table)
    if schema_name:
        target = f"{quote_ident(schema_name)}.{target}"
    if columns:
        target += f" ({', '.join(quote_ident(c) for c in columns)})"
    return target


def copied_rows(status: Any) -> int:
    """The row count of a `COPY 42` status tag."""
    tag = str(status or "").rsplit(" ", 1)[-1]
    return int(tag) if tag.isdigit() else 0


class RecordFeed:
    """The caller's records, checked and counted as the driver pulls them.

    `count` is the position (from 1) of the record the driver took last: when encoding it
    fails, that is the record to name. The driver pulls one record at a time and encodes it
    before pulling the next.
    """

    def __init__(self, records: Any, width: int) -> None:
        if isinstance(records, str | bytes | Mapping) or not isinstance(
            records, Iterable | AsyncIterable
        ):
            raise ProgrammingError(
                "records must be an iterable (or async iterable) of tuples, one per row, "
                f"got {type(records).__name__}"
            )
        self._records = records
        self._width = width
        self.count = 0

    def rows(self) -> Iterator[Sequence[Any]] | AsyncIterator[Sequence[Any]]:
        if isinstance(self._records, AsyncIterable):
            return self._async_rows(self._records)
        return self._sync_rows(self._records)

    def _check(self, record: Any) -> Sequence[Any]:
        self.count += 1
        kind = type(record)  # tuple and list first: the ABC check costs microseconds a row
        if (
            kind is not tuple
            and kind is not list
            and (isinstance(record, str | bytes | Mapping) or not isinstance(record, Sequence))
        ):
            raise BadRecord(
                f"record {self.count} is a {type(record).__name__}, not a tuple of values"
            )
        if len(record) != self._width:
            raise BadRecord(
                f"record {self.count} has {len(record)} values for {self._width} columns"
            )
        checked: Sequence[Any] = record
        return checked

    def _sync_rows(self, records: Iterable[Any]) -> Iterator[Sequence[Any]]:
        iterator = iter(records)
        while True:
            try:
                record = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                raise CallbackFailed(exc) from exc
            yield self._check(record)

    async def _async_rows(self, records: AsyncIterable[Any]) -> AsyncIterator[Sequence[Any]]:
        iterator = aiter(records)
        while True:
            try:
                record = await anext(iterator)
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise CallbackFailed(exc) from exc
            yield self._check(record)


def byte_source(source: Any) -> AsyncIterator[bytes]:
    """What `copy_to_table` reads: bytes, a binary file object, or an async iterable of bytes.

    A file name is refused rather than opened: a str would be ambiguous (data or a path?)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return _one_chunk(bytes(source))  # as is, asyncpg would take bytes for a file name
    if isinstance(source, str | os.PathLike):
        raise ProgrammingError(
            "copy_to_table(source=...) takes bytes, a binary file object or an async iterable "
            "of bytes, not a file name: open the file yourself, open(path, 'rb')"
        )
    if hasattr(source, "read"):
        return _file_chunks(source)
    if isinstance(source, AsyncIterable):
        return _async_chunks(source)
    raise ProgrammingError(
        "copy_to_table(source=...) takes bytes, a binary file object or an async iterable of "
        f"bytes, got {type(source).__name__}"
    )


def _chunk(data: Any) -> bytes | bytearray | memoryview:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CallbackFailed(
            ProgrammingError(
                f"the COPY source gave {type(data).__name__}, not bytes (open files in binary "
                "mode, 'rb', and encode text)"
            )
        )
    return data


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _file_chunks(file: Any) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = await loop.run_in_executor(None, file.read, _CHUNK)
        except Exception as exc:
            raise CallbackFailed(exc) from exc
        if not data:
            return
        yield bytes(_chunk(data))


async def _async_chunks(source: AsyncIterable[Any]) -> AsyncIterator[bytes]:
    iterator = aiter(source)
    while True:
        try:
            data = await anext(iterator)
        except StopAsyncIteration:
            return
        except Exception as exc:
            raise CallbackFailed(exc) from exc
        if data:
            yield bytes(_chunk(data))


def byte_sink(output: Any) -> Callable[[bytes], Awaitable[None]]:
    """What `copy_from_query` writes to: a binary file object or an async callable."""
    if isinstance(output, str | os.PathLike):
        raise ProgrammingError(
            "copy_from_query(output=...) takes a binary file object or an async callable, "
            "not a file name: open the file yourself, open(path, 'wb')"
        )
    if hasattr(output, "write"):
        write = output.write

        async def to_file(data: bytes) -> None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, write, data)
            except Exception as exc:
                raise CallbackFailed(exc) from exc

        return to_file
    if callable(output):

        async def to_callable(data: bytes) -> None:
            try:
                result = output(data)
                if not inspect.isawaitable(result):
                    raise ProgrammingError(
                        "copy_from_query(output=...) must be an async callable (or a file "
                        f"object); {output!r} returned {type(result).__name__}"
                    )
                await result
            except Exception as exc:
                raise CallbackFailed(exc) from exc

        return to_callable
    raise ProgrammingError(
        "copy_from_query(output=...) takes a binary file object or an async callable, "
        f"got {type(output).__name__}"
    )
