"""The pure pieces of COPY: records checked and counted as the driver pulls them, names
and options checked before anything is sent, the row count read from the status tag."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from asyncdb import ProgrammingError
from asyncdb._copy import BadRecord, CallbackFailed, RecordFeed, check_names, copied_rows


def test_records_are_counted_and_checked_one_by_one() -> None:
    feed = RecordFeed([(1, "a"), [2, "b"], (3,)], width=2)
    rows = feed.rows()
    assert next(rows) == (1, "a") and feed.count == 1  # type: ignore[call-overload]
    assert next(rows) == [2, "b"] and feed.count == 2  # type: ignore[call-overload]
    with pytest.raises(BadRecord, match="record 3 has 1 values for 2 columns"):
        next(rows)  # type: ignore[call-overload]


@pytest.mark.parametrize("record", ["ab", b"ab", {"a": 1, "b": 2}, 5])
def test_a_record_must_be_a_sequence_of_values(record: object) -> None:
    with pytest.raises(BadRecord, match="record 1 is a"):
        list(RecordFeed([record], width=2).rows())  # type: ignore[call-overload]


def test_what_the_callers_iterable_raises_is_marked_as_theirs() -> None:
    def records():  # type: ignore[no-untyped-def]
        yield (1,)
        raise ValueError("mine")

    with pytest.raises(CallbackFailed) as caught:
        list(RecordFeed(records(), width=1).rows())  # type: ignore[call-overload]
    assert isinstance(caught.value.error, ValueError)


async def test_async_records() -> None:
    async def records() -> AsyncIterator[tuple[int]]:
        yield (1,)
        yield (2, 3)

    feed = RecordFeed(records(), width=1)
    got = []
    with pytest.raises(BadRecord, match="record 2 has 2 values"):
        async for row in feed.rows():  # type: ignore[union-attr]
            got.append(row)
    assert got == [(1,)]


@pytest.mark.parametrize("records", ["abc", b"abc", {"a": 1}, 5, None])
def test_records_must_be_an_iterable_of_rows(records: object) -> None:
    with pytest.raises(ProgrammingError, match="records must be an iterable"):
        RecordFeed(records, width=1)


def test_names() -> None:
    assert check_names("m", "t", ("a", "b"), None) == ("t", ["a", "b"], None)
    for table, columns, schema in [
        ("", None, None),
        ("t", "a", None),
        ("t", [], None),
        ("t", [1], None),
        ("t", None, ""),
    ]:
        with pytest.raises(ProgrammingError):
            check_names("m", table, columns, schema)


def test_copied_rows() -> None:
    assert copied_rows("COPY 10000") == 10000
    assert copied_rows(None) == 0
