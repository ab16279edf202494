"""Small helpers the backend modules share."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from .._exceptions import InterfaceError

__all__ = ["detach_transport", "import_driver", "isolation_sql", "parse_bool"]


def import_driver(module: str, extra: str) -> ModuleType:
    """Import a driver lazily; say which extra installs it when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the {module!r} driver is not installed; install it with: "
            f"pip install 'asyncdb-layer[{extra}]'"
        ) from exc


def isolation_sql(isolation: str, allowed: Sequence[str], backend: str) -> str:
    """Check an isolation level name against a backend's list; return it as SQL words."""
    name = isolation.lower().replace(" ", "_").replace("-", "_")
    if name not in allowed:
        raise InterfaceError(
            f"unknown isolation level {isolation!r} for {backend}; expected one of: "
            + ", ".join(allowed)
        )
    return name.replace("_", " ").upper()


def parse_bool(value: Any) -> bool:
    """Read a boolean option that may come from a URL query string."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InterfaceError(f"expected a boolean option value, got {value!r}")


def detach_transport(transport: Any) -> None:
    """Make an asyncio transport inherited across fork() inert.

    The socket and the event loop's epoll set are shared with the parent process: a close,
    an abort or a finalizer in the child would unregister the socket from the parent's epoll
    set (or send bytes on it). Marking the transport closing and lost makes all of those
    return early; the child only ever closes its copy of the file descriptor.
    """
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    for layer in (transport, inner):
        if layer is not None:
            layer._closing = True
            layer._conn_lost = max(1, getattr(layer, "_conn_lost", 0) or 0)
