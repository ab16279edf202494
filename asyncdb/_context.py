"""The transaction stacks: one module-level ContextVar holding immutable values.

The value maps a Connection to the tuple of transactions this context opened on it. A task
created inside a transaction gets a copy of its parent's context; because the value is
immutable, whatever the child pushes or pops creates a new value in the child's own context
and can never change what the parent sees (the bug of encode/databases PR #546).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

__all__ = ["pop_transaction", "push_transaction", "transaction_stack"]

_EMPTY: Mapping[Any, tuple[Any, ...]] = MappingProxyType({})
_STACKS: ContextVar[Mapping[Any, tuple[Any, ...]]] = ContextVar(
    "asyncdb_transactions", default=_EMPTY
)


def transaction_stack(connection: Any) -> tuple[Any, ...]:
    """The transactions the current context has open on `connection`, outermost first."""
    return _STACKS.get().get(connection, ())


def push_transaction(connection: Any, transaction: Any) -> None:
    stacks = dict(_STACKS.get())
    stacks[connection] = (*stacks.get(connection, ()), transaction)
    _STACKS.set(MappingProxyType(stacks))


def pop_transaction(connection: Any, transaction: Any) -> None:
    """Remove `transaction` from the top of this context's stack (if it is there)."""
    stacks = dict(_STACKS.get())
    stack = stacks.get(connection, ())
    if not stack or stack[-1] is not transaction:
        return
    if len(stack) == 1:
        del stacks[connection]
    else:
        stacks[connection] = stack[:-1]
    _STACKS.set(MappingProxyType(stacks) if stacks else _EMPTY)
