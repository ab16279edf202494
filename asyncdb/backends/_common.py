"""Small helpers the backend modules share."""

from __future__ import annotations

import asyncio
import importlib
import ssl as ssl_module
from collections.abc import Awaitable, Sequence
from types import ModuleType
from typing import Any, TypeVar

from .._exceptions import InterfaceError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "connect_within",
    "detach_transport",
    "import_driver",
    "isolation_sql",
    "parse_bool",
    "tls_option",
]

T = TypeVar("T")

# One default for every backend: how long a whole connect (TCP, TLS, authentication, session
# setup) may take before it fails. A server that accepts and never answers must not hang us.
DEFAULT_CONNECT_TIMEOUT = 10.0

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "disable", "disabled")


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
    if text in _TRUE:
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


def close_socket(transport: Any) -> None:
    """Close the socket under an asyncio transport without its event loop (which may be
    closed): the transport is made inert first, so that no finalizer touches the loop."""
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    detach_transport(transport)
    for layer in (transport, inner):
        if layer is None:
            continue
        if hasattr(layer, "_closed"):
            layer._closed = True  # an SSL transport: closed, so its finalizer stays quiet
        sock = getattr(layer, "_sock", None)
        if sock is not None:
            layer._sock = None  # the selector transport's finalizer then has nothing to do
            try:
                sock.close()
            except OSError:
                pass


def connect_timeout(options: dict[str, Any]) -> float:
    """Pop `connect_timeout` (seconds, > 0) from the options, with the shared default."""
    value = options.pop("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:
        raise InterfaceError(f"connect_timeout must be a number of seconds > 0, got {value!r}")
    return seconds


async def connect_within(attempt: Awaitable[T], seconds: float, where: str) -> T:
    """Bound a whole connect: drivers apply their own timeouts to the TCP connect only, so
    a server that accepts and never answers the handshake would hang us forever.

    The attempt is cancelled on timeout (each backend closes what it half opened) and a
    TimeoutError naming the timeout and the address (never the password) is raised; being an
    OSError, every backend classifies it as a disconnect.
    """
    try:
        async with asyncio.timeout(seconds):
            return await attempt
    except TimeoutError:
        raise TimeoutError(
            f"connecting to {where} timed out after {seconds:g}s (connect_timeout)"
        ) from None


def tls_option(value: Any, cafile: str | None, backend: str) -> ssl_module.SSLContext | str | None:
    """Map the `ssl` values users write (URL or keyword) onto what the drivers take.

    None means no TLS; a str is a libpq mode asyncpg understands (PostgreSQL only).
    `true`/`verify-full` verify the certificate and the host name, `verify-ca` the certificate
    only, `require` encrypts without verifying (like libpq, it verifies the CA when a CA file
    is given). An ssl.SSLContext is used as it is.
    """
    if isinstance(value, ssl_module.SSLContext):
        return value
    if value is None:
        value = "verify-full" if cafile else "false"
    text = str(value).strip().lower().replace("_", "-")
    if value is False or text in _FALSE:
        return None
    if value is True or text in _TRUE or text in ("verify-full", "verify-identity"):
        return _context(cafile, verify=True, check_hostname=True)
    if text == "verify-ca":
        return _context(cafile, verify=True, check_hostname=False)
    if text in ("require", "required"):
        return _context(cafile, verify=cafile is not None, check_hostname=False)
    if backend == "postgresql" and text in ("allow", "prefer"):
        return text
    modes = "disable, allow, prefer, " if backend == "postgresql" else "disable, "
    raise InterfaceError(
        f"unknown ssl value {value!r} for {backend}; expected true, false, {modes}"
        "require, verify-ca, verify-full or an ssl.SSLContext"
    )


def _context(cafile: str | None, *, verify: bool, check_hostname: bool) -> ssl_module.SSLContext:
    try:
        context = ssl_module.create_default_context(cafile=cafile)
    except (OSError, ssl_module.SSLError) as exc:
        raise InterfaceError(f"cannot load the CA file {cafile!r}: {exc}") from None
    context.check_hostname = check_hostname and verify
    if not verify:
        context.verify_mode = ssl_module.CERT_NONE
    return context
