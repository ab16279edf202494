"""DatabaseURL: parse, rebuild and print database URLs without ever showing the password."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

__all__ = ["DatabaseURL"]

_MASK = "***"
# The servers' own default ports, for a host written without one (by dialect, and by the
# OpenTelemetry system name, which says "mariadb" for a MariaDB server).
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


class DatabaseURL:
    """An immutable database URL: `scheme://user:password@host:port/database?option=value`.

    `str()` and `repr()` mask the password, so a URL can be logged or shown in an error
    as it is; `render(hide_password=False)` gives the full text when it is really needed.
    """

    __slots__ = ("_components", "_url")
    _url: str

    def __init__(self, url: str | DatabaseURL) -> None:
        if isinstance(url, DatabaseURL):
            url = url._url
        if not isinstance(url, str):
            raise TypeError(f"database url must be a str or DatabaseURL, not {type(url).__name__}")
        if "://" not in url:
            raise ValueError("database url has no scheme: expected e.g. 'postgresql://host/db'")
        self._url = url
        self._components = urlsplit(url)

    @property
    def scheme(self) -> str:
        return self._components.scheme

    @property
    def dialect(self) -> str:
        """The backend family: `postgresql`, `mysql` or `sqlite`."""
        dialect = self.scheme.split("+")[0]
        return "postgresql" if dialect in ("postgres", "postgresql") else dialect

    @property
    def driver(self) -> str:
        return self.scheme.split("+")[1] if "+" in self.scheme else ""

    @property
    def userinfo(self) -> bytes | None:
        if self._components.username is None:
            return None
        info = self._components.username
        if self._components.password is not None:
            info += ":" + self._components.password
        return info.encode("utf-8")

    @property
    def username(self) -> str | None:
        user = self._components.username
        return None if user is None else unquote(user)

    @property
    def password(self) -> str | None:
        password = self._components.password
        return None if password is None else unquote(password)

    @property
    def hosts(self) -> list[tuple[str, int | None]]:
        """Every `host:port` of the URL, in order: `postgresql://u@h1:5432,h2:5433/db` gives
        `[("h1", 5432), ("h2", 5433)]`. Without a host in the netloc, the `host` (libpq style,
        may be a socket directory) or `unix_sock` query parameter, as encode/databases reads it."""
        hosts = self._netloc_hosts()
        if not any(host for host, _ in hosts):
            fallback = self.options.get("host") or self.options.get("unix_sock")
            port = hosts[0][1] if hosts else None
            return [(fallback, port)] if fallback else []
        return hosts

    @property
    def hostname(self) -> str | None:
        """The first host (see `hosts`)."""
        hosts = self.hosts
        return (hosts[0][0] or None) if hosts else None

    @property
    def port(self) -> int | None:
        """The port of the first host."""
        hosts = self._netloc_hosts()
        return hosts[0][1] if hosts else None

    @property
    def _hostinfo(self) -> str:
        return self._components.netloc.rpartition("@")[2]

    def _netloc_hosts(self) -> list[tuple[str, int | None]]:
        return [_split_host(part) for part in self._hostinfo.split(",") if part]

    @property
    def netloc(self) -> str | None:
        return self._components.netloc or None

    @property
    def database(self) -> str:
        path = self._components.path
        if path.startswith("/"):
            path = path[1:]
        return unquote(path)

    @property
    def options(self) -> dict[str, str]:
        return dict(parse_qsl(self._components.query))

    def replace(self, **kwargs: Any) -> DatabaseURL:
        """Return a copy with some components replaced (`username`, `password`, `hostname`,
        `port`, `database`, `scheme`, `dialect`, `driver`, `options`)."""
        if "dialect" in kwargs or "driver" in kwargs:
            dialect = kwargs.pop("dialect", self.dialect)
            driver = kwargs.pop("driver", self.driver)
            kwargs["scheme"] = f"{dialect}+{driver}" if driver else dialect
        parts = {
            "username": self.username,
            "password": self.password,
            "hostname": next((host for host, _ in self._netloc_hosts()), None),
            "port": self.port,
            "database": self.database,
            "scheme": self.scheme,
            "options": self.options,
        }
        unknown = set(kwargs) - set(parts)
        if unknown:
            raise TypeError(f"DatabaseURL.replace() got unknown components: {sorted(unknown)}")
        # every host of a multi-host URL, as written, unless a host or port is replaced
        keep = "hostname" not in kwargs and "port" not in kwargs
        parts["hostinfo"] = self._hostinfo if keep else None
        parts.update(kwargs)
        return DatabaseURL(_build(parts))

    def render(self, *, hide_password: bool = True) -> str:
        """Return the URL as text; the password is masked unless `hide_password=False`."""
        if not hide_password or self.password is None:
            return self._url
        return self.replace(password=_MASK)._url

    @property
    def obscure_password(self) -> str:
        return self.render(hide_password=True)

    def __str__(self) -> str:
        return self.render(hide_password=True)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.render(hide_password=True)!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = DatabaseURL(other) if "://" in other else None
        return isinstance(other, DatabaseURL) and self._url == other._url

    def __hash__(self) -> int:
        return hash(self._url)


def _build(parts: Mapping[str, Any]) -> str:
    netloc = ""
    if parts["username"] is not None:
        netloc = quote(parts["username"], safe="")
        if parts["password"] is not None:
            password = parts["password"]
            netloc += ":" + (password if password == _MASK else quote(password, safe=""))
        netloc += "@"
    if parts["hostinfo"] is not None:
        netloc += parts["hostinfo"]
    else:
        host = parts["hostname"] or ""
        netloc += f"[{host}]" if ":" in host else host
        if parts["port"] is not None:
            netloc += f":{parts['port']}"
    url = f"{parts['scheme']}://{netloc}/{parts['database']}"
    if parts["options"]:
        url += "?" + urlencode(parts["options"])
    return url


def _split_host(part: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[::1]:port` -> (host, port); a bad port is a ValueError naming it."""
    host, port = part, ""
    if part.startswith("["):
        host, _, rest = part[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif ":" in part:
        host, _, port = part.rpartition(":")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"database url has a bad port {port!r} for host {host!r}")
    host = unquote(host)
    return (host if host.startswith("/") else host.lower()), int(port) if port else None
