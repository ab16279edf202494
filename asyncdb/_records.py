"""Record: one result row, addressable by position, by name and as an attribute."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import repeat
from typing import Any

__all__ = ["Record", "RowMapping", "RowMeta"]


class RowMeta:
    """What all rows of one result share: column names, their positions, result processors."""

    __slots__ = ("by_object", "index", "keys", "processors")

    def __init__(
        self,
        keys: Sequence[str],
        processors: Sequence[Callable[[Any], Any] | None] | None = None,
        by_object: Mapping[int, int] | None = None,
    ) -> None:
        self.keys = tuple(keys)
        # id() of each selected SQLAlchemy column -> its position: in a join, two tables'
        # `title` columns share a name but not an object
        self.by_object = by_object or {}
        # The first column wins when two share a name, as in the drivers' own records.
        self.index: dict[str, int] = {}
        for i, key in enumerate(self.keys):
            self.index.setdefault(key, i)
        self.processors = tuple(processors) if processors else None

    def rows(self, raw_rows: Sequence[Sequence[Any]]) -> list[Record]:
        """Wrap driver rows, applying result processors once per value if there are any."""
        processors = self.processors
        if processors is None:
            # map() rather than a comprehension: the loop runs in C (~15% less per row)
            return list(map(Record, repeat(self, len(raw_rows)), raw_rows))
        # by position: a driver record may iterate over its keys rather than its values
        steps = tuple(enumerate(processors))
        return [
            Record(self, tuple(row[i] if p is None else p(row[i]) for i, p in steps))
            for row in raw_rows
        ]


class Record(Mapping[str, Any]):
    """A result row: `row["name"]`, `row[0]`, `row.name`, `dict(row)`, `row._mapping`.

    It wraps the driver's own row without copying it. It is a Mapping, as in encode/databases:
    iterating yields the column names; `row.values()` or `tuple(row.values())` gives the values.
    """

    __slots__ = ("_meta", "_values")

    def __init__(self, meta: RowMeta, values: Sequence[Any]) -> None:
        self._meta = meta
        self._values = values

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return self._values[self._meta.index[key]]
            except KeyError:
                raise KeyError(f"no column named {key!r} in this row") from None
        if isinstance(key, int | slice):
            return self._values[key]
        position = self._meta.by_object.get(id(key))
        if position is not None:
            return self._values[position]
        name = getattr(key, "name", None)  # a SQLAlchemy column or label
        if isinstance(name, str):
            return self[name]
        raise KeyError(f"a row is indexed by column name or position, not {key!r}")

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[self._meta.index[name]]
        except KeyError:
            raise AttributeError(f"row has no column named {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta.keys)

    def __len__(self) -> int:
        return len(self._meta.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._meta.index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Record):
            return bool(self._meta.keys == other._meta.keys and self.values() == other.values())
        if isinstance(other, tuple):
            return bool(self.values() == other)
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.values())

    def keys(self) -> Any:
        return self._meta.keys

    def values(self) -> Any:
        values = self._values
        return tuple(values[i] for i in range(len(self._meta.keys)))  # by position: a driver
        # record may iterate over its keys

    def items(self) -> Any:
        return tuple(zip(self._meta.keys, self.values(), strict=True))

    @property
    def _mapping(self) -> Mapping[str, Any]:
        return RowMapping(self._meta.keys, self.values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"<Record {inner}>"


class RowMapping(Mapping[str, Any]):
    """`row._mapping`: every column in order, even when two share a name.

    `keys()`, `values()` and `items()` list each column (`SELECT 1 AS id, 2 AS id` gives
    `["id", "id"]` and `[1, 2]`); looking a name up, and so `dict(row._mapping)`, gives the
    first column of that name, as `row["id"]` does.
    """

    __slots__ = ("_keys", "_values")

    def __init__(self, keys: Sequence[str], values: Sequence[Any]) -> None:
        self._keys = tuple(keys)
        self._values = tuple(values)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[self._keys.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def keys(self) -> Any:
        return self._keys

    def values(self) -> Any:
        return self._values

    def items(self) -> Any:
        return tuple(zip(self._keys, self._values, strict=True))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self) == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RowMapping({list(self.items())!r})"
