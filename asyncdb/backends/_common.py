"""Small helpers the backend modules share."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from .._exceptions import InterfaceError

__all__ = ["import_driver", "isolation_sql", "parse_bool"]


def import_driver(module: str, extra: str) -> ModuleType:
    """Import a driver lazily; say which extra installs it when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the {module!r} driver is not installed; install it with: "
            f"pip install 'asyncdb[{extra}]'"
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
