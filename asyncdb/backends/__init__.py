"""Backends by URL scheme, imported lazily so that no driver is needed until it is used."""

from __future__ import annotations

import importlib
from typing import Any

from .._exceptions import InterfaceError
from .._url import DatabaseURL
from .base import Backend

__all__ = ["create_backend"]

_BACKENDS = {
    ("postgresql", ""): "postgres:PostgresBackend",
    ("postgresql", "asyncpg"): "postgres:PostgresBackend",
    ("mysql", ""): "mysql:MySQLBackend",
    ("mysql", "aiomysql"): "mysql:MySQLBackend",
    ("mariadb", ""): "mysql:MySQLBackend",
    ("mariadb", "aiomysql"): "mysql:MySQLBackend",
    ("mysql", "asyncmy"): "asyncmy:AsyncmyBackend",
    ("mariadb", "asyncmy"): "asyncmy:AsyncmyBackend",
    ("sqlite", ""): "sqlite:SQLiteBackend",
    ("sqlite", "aiosqlite"): "sqlite:SQLiteBackend",
}


def create_backend(url: DatabaseURL, options: dict[str, Any]) -> Backend:
    """Build the backend for a URL; backend options are removed from `options`."""
    target = _BACKENDS.get((url.dialect, url.driver))
    if target is None:
        known = sorted({f"{d}+{drv}" if drv else d for d, drv in _BACKENDS})
        raise InterfaceError(
            f"unsupported database url scheme {url.scheme!r}; supported: {', '.join(known)}"
        )
    module_name, class_name = target.split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    backend: Backend = getattr(module, class_name)(url, options)
    return backend
