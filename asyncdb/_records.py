"""Record: one result row, addressable by position, by name and as an attribute."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["Record", "RowMeta"]


class RowMeta:
    """What all rows of one result share: column names, their positions, result processors."""

    __slots__ = ("index", "keys", "processors")

    def __init__(
        self,
        keys: Sequence[str],
        processors: Sequence[Callable[[Any], Any] | None] | None = None,
    ) -> None:
        self.keys = tuple(keys)
        # The first column wins when two share a name, as in the drivers' own records.
        self.index: dict[str, int] = {}
        for i, key in enumerate(self.keys):
            self.index.setdefault(key, i)
        self.processors = tuple(processors) if processors else None

    def rows(self, raw_rows: Sequence[Sequence[Any]]) -> list[Record]:
        """Wrap driver rows, applying result processors once per value if there are any."""
        processors = self.processors
        if processors is None:
            return [Record(self, row) for row in raw_rows]
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
        return dict(self.items())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"<Record {inner}>"
