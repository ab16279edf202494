"""Record: one result row, addressable by position, by name and as an attribute."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

__all__ = ["Record", "RowMapping", "RowMeta"]


class RowMeta:
    """What all rows of one result share: column names, their positions, result processors,
    and the row class that carries them."""

    __slots__ = ("_row_class", "by_object", "index", "keys", "processors")

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
        self._row_class: type[_Row] | None = None

    def _make_row_class(self) -> type[_Row]:
        """A subclass of the row type with this meta as a class attribute, made at first
        use (~10 µs, once per column list of a cached query): its rows are the driver's
        tuples copied by tuple's own constructor, in C, with no Python call per row."""
        cls = self._row_class = type("Record", (_Row,), {"__slots__": (), "_meta": self})
        return cls

    def rows(self, raw_rows: Sequence[Sequence[Any]]) -> list[Record]:
        """Wrap driver rows, applying result processors once per value if there are any."""
        processors = self.processors
        cls = self._row_class or self._make_row_class()
        rows: list[Any]  # of Record (registered, not a nominal subclass); no cast() call
        if processors is None:
            if not raw_rows or type(raw_rows[0]) is tuple:
                # map() over the class: the whole loop runs in C
                rows = list(map(cls, raw_rows))
                return rows
            # by position: a driver record may iterate over its keys rather than its values
            positions = range(len(self.keys))
            rows = [cls(map(row.__getitem__, positions)) for row in raw_rows]
            return rows
        steps = tuple(enumerate(processors))
        rows = [cls(row[i] if p is None else p(row[i]) for i, p in steps) for row in raw_rows]
        return rows


class Record(Mapping[str, Any]):
    """A result row: `row["name"]`, `row[0]`, `row.name`, `dict(row)`, `row._mapping`.

    It is a Mapping, as in encode/databases: iterating yields the column names;
    `row.values()` or `tuple(row.values())` gives the values. The rows asyncdb builds are
    tuples of the values underneath (PostgreSQL's are asyncpg's own records); both are
    instances of this class.
    """

    __slots__ = ()


class _Row(tuple[Any, ...]):
    """The rows asyncdb builds: a tuple of the values, with the column names and positions
    shared by every row of a result on a per-result subclass (`RowMeta.row_class`). A tuple
    so that wrapping a driver row costs no Python call; the Mapping behaviour is Record's."""

    __slots__ = ()
    _meta: ClassVar[RowMeta]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._meta.index[key])
            except KeyError:
                raise KeyError(f"no column named {key!r} in this row") from None
        if isinstance(key, int | slice):
            return tuple.__getitem__(self, key)
        position = self._meta.by_object.get(id(key))
        if position is not None:
            return tuple.__getitem__(self, position)
        name = getattr(key, "name", None)  # a SQLAlchemy column or label
        if isinstance(name, str):
            return self[name]
        raise KeyError(f"a row is indexed by column name or position, not {key!r}")

    def __getattr__(self, name: str) -> Any:
        try:
            return tuple.__getitem__(self, self._meta.index[name])
        except KeyError:
            raise AttributeError(f"row has no column named {name!r}") from None

    # tuple's own methods must not hide columns of these names (`SELECT count(*) AS count`)
    count = property(lambda self: self.__getattr__("count"))
    index = property(lambda self: self.__getattr__("index"))

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._meta.index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Row):
            return bool(self._meta.keys == other._meta.keys and self.values() == other.values())
        if isinstance(other, tuple):
            return bool(self.values() == other)
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = tuple.__hash__  # the hash of its values, as `hash(row.values())`
    __reversed__ = None  # type: ignore[assignment]  # a Mapping: no order of keys to reverse

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> Any:
        return self._meta.keys

    def values(self) -> Any:
        return tuple.__getitem__(self, slice(None))  # a plain tuple of the values

    def items(self) -> Any:
        return tuple(zip(self._meta.keys, self.values(), strict=True))

    @property
    def _mapping(self) -> Mapping[str, Any]:
        return RowMapping(self._meta.keys, self.values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"<Record {inner}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # the class is made at run time: pickle the names and values, rebuild on load
        return _rebuild, (self._meta.keys, self.values())


def _rebuild(keys: tuple[str, ...], values: tuple[Any, ...]) -> Record:
    """An unpickled row (the values are already processed: no result processors)."""
    return RowMeta(keys).rows([values])[0]


Record.register(_Row)


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
